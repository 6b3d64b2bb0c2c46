// The fanotify ABI values this code relies on, under its own names.
//
// The daemon is built on Debian but runs on whatever kernel the node has
// (RHEL 9's 5.14 with backports, Ubuntu's 5.15 and 6.8), and the build
// host's <linux/fanotify.h> may predate some of these (FAN_RENAME and
// FAN_REPORT_TARGET_FID arrived in 5.17). The values are fixed by the kernel
// ABI, so they are spelled out here and checked against the header where it
// has them. Whether the running kernel accepts them is found out by trying
// (see fanotify_group.hpp), never from its version number.
#pragma once

#include <sys/fanotify.h>

#include <cstdint>

namespace pvc {

// fanotify_init() report flags.
constexpr unsigned kFanReportFid = 0x00000200;        // 5.1
constexpr unsigned kFanReportDirFid = 0x00000400;     // 5.9
constexpr unsigned kFanReportName = 0x00000800;       // 5.9
constexpr unsigned kFanReportTargetFid = 0x00001000;  // 5.17
constexpr unsigned kFanReportDfidName = kFanReportDirFid | kFanReportName;

// Event bits that older headers lack.
constexpr std::uint64_t kFanRename = 0x10000000;  // 5.17

// Info record types.
constexpr std::uint8_t kFanInfoFid = 1;
constexpr std::uint8_t kFanInfoDfidName = 2;
constexpr std::uint8_t kFanInfoDfid = 3;
constexpr std::uint8_t kFanInfoOldDfidName = 10;  // FAN_RENAME only
constexpr std::uint8_t kFanInfoNewDfidName = 12;  // FAN_RENAME only

#ifdef FAN_REPORT_FID
static_assert(kFanReportFid == FAN_REPORT_FID);
#endif
#ifdef FAN_REPORT_DIR_FID
static_assert(kFanReportDirFid == FAN_REPORT_DIR_FID);
static_assert(kFanReportName == FAN_REPORT_NAME);
#endif
#ifdef FAN_REPORT_TARGET_FID
static_assert(kFanReportTargetFid == FAN_REPORT_TARGET_FID);
#endif
#ifdef FAN_RENAME
static_assert(kFanRename == FAN_RENAME);
#endif
#ifdef FAN_EVENT_INFO_TYPE_FID
static_assert(kFanInfoFid == FAN_EVENT_INFO_TYPE_FID);
static_assert(kFanInfoDfidName == FAN_EVENT_INFO_TYPE_DFID_NAME);
static_assert(kFanInfoDfid == FAN_EVENT_INFO_TYPE_DFID);
#endif
#ifdef FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
static_assert(kFanInfoOldDfidName == FAN_EVENT_INFO_TYPE_OLD_DFID_NAME);
static_assert(kFanInfoNewDfidName == FAN_EVENT_INFO_TYPE_NEW_DFID_NAME);
#endif

}  // namespace pvc
