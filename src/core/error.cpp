#include "latent/core/error.hpp"

namespace latent {

int exit_code(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::kUsage: return 64;
    case ErrorKind::kInput: return 65;
    case ErrorKind::kNoInput: return 66;
    case ErrorKind::kNumerical: return 70;
    case ErrorKind::kOutput: return 73;
    case ErrorKind::kIo: return 74;
    case ErrorKind::kRequeue: return 75;
    case ErrorKind::kInternal: return 1;
  }
  return 1;
}

const char* kind_name(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::kUsage: return "usage";
    case ErrorKind::kInput: return "input";
    case ErrorKind::kNoInput: return "no-input";
    case ErrorKind::kNumerical: return "numerical";
    case ErrorKind::kOutput: return "output";
    case ErrorKind::kIo: return "io";
    case ErrorKind::kRequeue: return "requeue";
    case ErrorKind::kInternal: return "internal";
  }
  return "internal";
}

}  // namespace latent
