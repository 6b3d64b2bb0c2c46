// An owned file descriptor. Every descriptor the daemon opens lives in one of
// these so that early returns and exceptions never leak directory handles,
// which a crawl of a million directories would otherwise exhaust quickly.
#pragma once

#include <unistd.h>

#include <utility>

namespace pvc {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset(std::exchange(other.fd_, -1));
    }
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  void reset(int fd = -1) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = fd;
  }

  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

}  // namespace pvc
