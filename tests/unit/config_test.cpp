#include <gtest/gtest.h>

#include "config/parse.hpp"

namespace pvc {
namespace {

ParseResult parse(std::vector<std::string> args, Environment env = {}) {
  return parse_settings(args, env);
}

void expect_rejected(const ParseResult& r, const std::string& flag,
                     const std::string& env, const std::string& value) {
  EXPECT_EQ(r.status, ParseStatus::kExit);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.message.find(flag), std::string::npos) << r.message;
  EXPECT_NE(r.message.find(env), std::string::npos) << r.message;
  EXPECT_NE(r.message.find(value), std::string::npos) << r.message;
}

TEST(Config, DefaultsMatchTheReferenceEvictor) {
  const ParseResult r = parse({});
  ASSERT_EQ(r.status, ParseStatus::kRun) << r.message;
  const Settings& s = r.settings;
  EXPECT_EQ(s.mount_path, "/kv-cache");
  EXPECT_EQ(s.cache_root(), "/kv-cache/kv/model-cache/models");
  EXPECT_EQ(s.cleanup_threshold, 85.0);
  EXPECT_EQ(s.target_threshold, 70.0);
  EXPECT_EQ(s.hot_minutes, 60.0);
  EXPECT_EQ(s.crawlers, 8U);
  EXPECT_EQ(s.interval_seconds, 0.5);
  EXPECT_EQ(s.batch_size, 100U);
  EXPECT_EQ(s.dir_cleanup_ttl_seconds, 120.0);
  EXPECT_FALSE(s.dry_run);
  EXPECT_EQ(s.mode, Mode::kAuto);
}

TEST(Config, FlagWinsOverEnvironmentWhichWinsOverDefault) {
  const Environment env = {{"CLEANUP_THRESHOLD", "90"},
                           {"TARGET_THRESHOLD", "60"},
                           {"NUM_CRAWLER_PROCESSES", "4"}};
  const ParseResult r = parse({"--cleanup-threshold", "80"}, env);
  ASSERT_EQ(r.status, ParseStatus::kRun) << r.message;
  EXPECT_EQ(r.settings.cleanup_threshold, 80.0);
  EXPECT_EQ(r.settings.target_threshold, 60.0);
  EXPECT_EQ(r.settings.crawlers, 4U);
}

TEST(Config, BooleansAcceptTheUsualSpellings) {
  EXPECT_TRUE(parse({"--dry-run"}).settings.dry_run);
  EXPECT_TRUE(parse({"--dry-run=true"}).settings.dry_run);
  EXPECT_FALSE(parse({"--dry-run=false"}).settings.dry_run);
  EXPECT_TRUE(parse({}, {{"DRY_RUN", "True"}}).settings.dry_run);
  EXPECT_TRUE(parse({}, {{"DRY_RUN", "yes"}}).settings.dry_run);
  EXPECT_FALSE(parse({}, {{"ENABLE_DIR_CLEANUP", "0"}}).settings.dir_cleanup);
  expect_rejected(parse({}, {{"DRY_RUN", "maybe"}}), "--dry-run", "DRY_RUN",
                  "maybe");
}

TEST(Config, InvalidValuesNameTheSettingAndWhatIsAllowed) {
  expect_rejected(parse({"--crawlers", "3"}), "--crawlers",
                  "NUM_CRAWLER_PROCESSES", "3");
  expect_rejected(parse({}, {{"NUM_CRAWLER_PROCESSES", "32"}}), "--crawlers",
                  "NUM_CRAWLER_PROCESSES", "32");
  expect_rejected(parse({"--cleanup-threshold", "150"}), "--cleanup-threshold",
                  "CLEANUP_THRESHOLD", "150");
  expect_rejected(parse({}, {{"CLEANUP_THRESHOLD", "abc"}}),
                  "--cleanup-threshold", "CLEANUP_THRESHOLD", "abc");
  expect_rejected(parse({"--target-threshold", "-1"}), "--target-threshold",
                  "TARGET_THRESHOLD", "-1");
  expect_rejected(parse({"--interval", "0"}), "--interval",
                  "LOGGER_INTERVAL_SECONDS", "0");
  expect_rejected(parse({"--batch-size", "1.5"}), "--batch-size",
                  "DELETION_BATCH_SIZE", "1.5");
  expect_rejected(parse({"--hex-bucket-len", "5"}), "--hex-bucket-len",
                  "HEX_BUCKET_LEN", "5");
  expect_rejected(parse({"--mode", "turbo"}), "--mode", "EVICTOR_MODE",
                  "turbo");
  expect_rejected(parse({"--log-level", "loud"}), "--log-level", "LOG_LEVEL",
                  "loud");
  expect_rejected(parse({"--cache-dir", "../etc"}), "--cache-dir",
                  "CACHE_DIRECTORY", "../etc");
  expect_rejected(parse({"--mount-path", "relative"}), "--mount-path",
                  "PVC_MOUNT_PATH", "relative");
  expect_rejected(parse({"--max-cache-bytes", "12Q"}), "--max-cache-bytes",
                  "MAX_CACHE_BYTES", "12Q");
}

TEST(Config, TargetMustBeBelowCleanup) {
  const ParseResult r =
      parse({"--cleanup-threshold", "70", "--target-threshold", "70"});
  EXPECT_EQ(r.status, ParseStatus::kExit);
  EXPECT_NE(r.message.find("TARGET_THRESHOLD"), std::string::npos);
  EXPECT_NE(r.message.find("CLEANUP_THRESHOLD"), std::string::npos);
  const ParseResult e = parse({"--emergency-threshold", "80"});
  EXPECT_EQ(e.status, ParseStatus::kExit);
  EXPECT_NE(e.message.find("EMERGENCY_THRESHOLD"), std::string::npos);
}

TEST(Config, ByteBudgetsTakeBinaryUnits) {
  EXPECT_EQ(parse({"--max-cache-bytes", "1000"}).settings.max_cache_bytes,
            1000U);
  EXPECT_EQ(parse({"--max-cache-bytes", "512Mi"}).settings.max_cache_bytes,
            512ULL << 20U);
  EXPECT_EQ(parse({"--max-cache-bytes", "2G"}).settings.max_cache_bytes,
            2ULL << 30U);
  EXPECT_EQ(parse({"--max-cache-bytes", "1.5TiB"}).settings.max_cache_bytes,
            3ULL << 39U);
}

TEST(Config, ReferenceQueueSettingsAreAcceptedAndIgnored) {
  const ParseResult r = parse(
      {}, {{"FILE_QUEUE_MAXSIZE", "10000"}, {"FILE_QUEUE_MIN_SIZE", "1000"}});
  ASSERT_EQ(r.status, ParseStatus::kRun) << r.message;
  EXPECT_EQ(r.notes.size(), 2U);
  const ParseResult bad = parse({}, {{"FILE_QUEUE_MAXSIZE", "lots"}});
  EXPECT_EQ(bad.status, ParseStatus::kExit);
  EXPECT_NE(bad.message.find("FILE_QUEUE_MAXSIZE"), std::string::npos);
}

TEST(Config, UnknownFlagsAndHelp) {
  const ParseResult unknown = parse({"--no-such-flag"});
  EXPECT_EQ(unknown.status, ParseStatus::kExit);
  EXPECT_EQ(unknown.exit_code, 2);
  const ParseResult help = parse({"--help"});
  EXPECT_EQ(help.status, ParseStatus::kExit);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.message.find("FILE_ACCESS_TIME_THRESHOLD_MINUTES"),
            std::string::npos);
}

TEST(Config, EventsEndpointIsOffUnlessGiven) {
  EXPECT_EQ(parse({}).settings.events_endpoint, "");
  EXPECT_EQ(
      parse({"--events-endpoint", "tcp://*:5557"}).settings.events_endpoint,
      "tcp://*:5557");
  EXPECT_EQ(parse({}, {{"STORAGE_EVENTS_ENDPOINT", "ipc:///run/e.sock"}})
                .settings.events_endpoint,
            "ipc:///run/e.sock");
  expect_rejected(parse({"--events-endpoint", "udp://x:1"}),
                  "--events-endpoint", "STORAGE_EVENTS_ENDPOINT", "udp://x:1");
}

}  // namespace
}  // namespace pvc
