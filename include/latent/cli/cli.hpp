#pragma once
/// \file The command line as a library call: `latent <command> ...`. main() only creates
/// the MPI session and calls run(), so tests run commands in-process.
#include <ostream>
#include <string>
#include <vector>

namespace latent::cli {

/// Runs one command. `args` excludes the program name. Results (JSON) go to `out`, human
/// progress and errors to `err` (rank 0 only). Returns the process exit code (docs/FAULTS.md,
/// "Exit codes"). Requires a live comm::MpiSession; collective over all ranks.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace latent::cli
