#pragma once
/// \file Errors and process exit codes. Every failure that reaches the command line is a
/// latent::Error whose kind fixes the exit code (documented in docs/FAULTS.md, "Exit codes").
#include <stdexcept>
#include <string>

namespace latent {

/// What went wrong, which decides the exit code.
enum class ErrorKind {
  kUsage,      ///< bad command line or option value (exit 64)
  kInput,      ///< bad input data: NaN, wrong dtype, shape mismatch, bad file (exit 65)
  kNoInput,    ///< an input file or directory does not exist (exit 66)
  kNumerical,  ///< numerical failure: collapsed component, NaN objective (exit 70)
  kOutput,     ///< output cannot be created or already exists (exit 73)
  kIo,         ///< read or write failed part-way (exit 74)
  kRequeue,    ///< stopped by SIGTERM/SIGUSR1 after writing a checkpoint: resubmit with --resume (exit 75)
  kInternal,   ///< a bug or an unexpected exception (exit 1)
};

/// Exit code for an error kind (sysexits.h values where one fits).
int exit_code(ErrorKind kind) noexcept;

/// The one exception type the library throws for expected failures.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }
  int exit_code() const noexcept { return latent::exit_code(kind_); }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void throw_usage(const std::string& m) { throw Error(ErrorKind::kUsage, m); }
[[noreturn]] inline void throw_input(const std::string& m) { throw Error(ErrorKind::kInput, m); }
[[noreturn]] inline void throw_numerical(const std::string& m) {
  throw Error(ErrorKind::kNumerical, m);
}
[[noreturn]] inline void throw_output(const std::string& m) { throw Error(ErrorKind::kOutput, m); }

}  // namespace latent
