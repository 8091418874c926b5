#include "latent/io/import/labels.hpp"

#include <fmt/format.h>

#include <filesystem>

#include "latent/core/error.hpp"

namespace latent::io::importers {

namespace fs = std::filesystem;

LabelReader::LabelReader(const std::string& path) : path_(path) {
  const std::string ext = fs::path(path).extension() == ".gz" ? fs::path(path).stem().extension().string()
                                                               : fs::path(path).extension().string();
  if (ext == ".npy") {
    npy_ = std::make_unique<NpyReader>(path, 1.0);
  } else {
    stream_ = std::make_unique<ByteStream>(path);
    unsigned char peek[4] = {1, 1, 1, 1};
    {
      ByteStream probe(path);
      try { probe.read(peek, 4, "the header"); } catch (const Error&) {}
    }
    if (peek[0] == 0 && peek[1] == 0 && peek[3] == 1) {
      idx_ = read_idx_header(*stream_);
      idx_size_ = idx_type_size(idx_.type, path);
    } else {
      text_ = true;
    }
  }
}

std::int64_t LabelReader::next(Index row) {
  if (npy_) {
    RowMatrix one;
    if (npy_->read(one, 1) != 1) short_by(row);
    return static_cast<std::int64_t>(one(0, 0));
  }
  if (text_) {
    std::string line;
    while (stream_->getline(line) && line.find_first_not_of(" \t") == std::string::npos) {}
    if (line.empty()) short_by(row);
    try {
      return std::stoll(line);
    } catch (const std::exception&) {
      throw_input(fmt::format("labels {}, row {}: '{}' is not an integer", path_, row, line));
    }
  }
  if (row >= idx_.dims[0]) short_by(row);
  unsigned char b[8];
  stream_->read(b, idx_size_, "label " + std::to_string(row));
  return static_cast<std::int64_t>(idx_value(idx_.type, b));
}

void LabelReader::short_by(Index row) const {
  throw_input(fmt::format("labels {}: has fewer labels than data rows (no label for row {})", path_, row));
}

}  // namespace latent::io::importers
