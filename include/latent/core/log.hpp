#pragma once
/// \file Minimal rank-aware logger: human-readable lines go to one stream (stderr in the
/// CLI), only on the ranks that are allowed to speak (rank 0 by default).
#include <ostream>
#include <string_view>

namespace latent {

class Logger {
 public:
  /// `os` may be null (silent). `active` is false on ranks that should stay quiet.
  Logger(std::ostream* os, bool active) : os_(os), active_(active) {}
  static Logger silent() { return Logger(nullptr, false); }

  void info(std::string_view line) const { write("", line); }
  void warn(std::string_view line) const { write("warning: ", line); }
  bool active() const noexcept { return os_ != nullptr && active_; }

 private:
  void write(std::string_view prefix, std::string_view line) const {
    if (!active()) return;
    *os_ << prefix << line << '\n';
    os_->flush();
  }
  std::ostream* os_;
  bool active_;
};

}  // namespace latent
