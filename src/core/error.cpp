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

}  // namespace latent
