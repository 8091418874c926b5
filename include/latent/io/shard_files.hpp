#pragma once
/// \file Which entries of a data directory are shards (docs/FORMATS.md). Shared
/// by dense and count datasets.
#include <string>
#include <vector>

namespace latent::io {

/// The shard files of a data directory, sorted by file name (byte order).
///
/// A shard is a directory entry
///   - whose name ends in ".h5" and does not start with '.', and
///   - that is a regular file, or a symbolic link that resolves to a regular file.
/// Entries with other names are ignored: hidden ones (".part-00000.h5", the temporaries of
/// editors and rsync), vocabulary.txt, labels.txt, "part-00000.h5.tmp-123". An entry with a
/// shard's name that is not a shard is refused, never skipped, since skipping it would
/// train on fewer rows than the directory holds: a dangling symbolic link, a symbolic link
/// loop, a directory, a FIFO, a socket or a device. Entries are examined with stat(2)
/// only; nothing is opened (opening a FIFO would block).
///
/// Local. Throws Error(kNoInput) naming the entry and what it is, or if the directory
/// cannot be read. Returns an empty vector if the directory has no shard.
std::vector<std::string> list_shard_files(const std::string& directory);

/// Throws Error(kNoInput) naming `path` unless it is a regular file or a symbolic link
/// that resolves to one (a dangling link, a link loop, a directory, FIFO, socket or device
/// is refused, without opening it). `what` starts the message ("file", "data"). Local.
void require_regular_file(const std::string& path, const std::string& what);

}  // namespace latent::io
