#include "latent/train/content_hash.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "latent/io/block_source.hpp"

#include <algorithm>
#include <filesystem>
#include <vector>

namespace latent::train {

ContentHasher::ContentHasher(std::size_t num_shards) : sums_(num_shards) {
  for (auto& s : sums_) s.store(0, std::memory_order_relaxed);
}

void ContentHasher::add_dense(Index shard, Index first_row, const RowMatrix& x) {
  if (shard < 0 || static_cast<std::size_t>(shard) >= sums_.size()) return;
  std::uint64_t sum = 0;  // unsigned: wraps modulo 2^64
  const auto bytes = static_cast<std::size_t>(x.cols()) * sizeof(double);
  for (Index i = 0; i < x.rows(); ++i)
    sum += XXH64(x.row(i).data(), bytes, static_cast<XXH64_hash_t>(first_row + i));
  sums_[static_cast<std::size_t>(shard)].fetch_add(sum, std::memory_order_relaxed);
}

void ContentHasher::add_dense_float32(Index shard, Index first_row, const RowMatrixF& x) {
  if (shard < 0 || static_cast<std::size_t>(shard) >= sums_.size()) return;
  std::uint64_t sum = 0;
  const auto bytes = static_cast<std::size_t>(x.cols()) * sizeof(double);
  constexpr Index kTile = 64;  // rows widened at once (one vectorised cast per tile)
  RowMatrix tile;
  for (Index i0 = 0; i0 < x.rows(); i0 += kTile) {
    const Index n = std::min(kTile, x.rows() - i0);
    tile = x.middleRows(i0, n).cast<double>();
    for (Index i = 0; i < n; ++i)
      sum += XXH64(tile.row(i).data(), bytes, static_cast<XXH64_hash_t>(first_row + i0 + i));
  }
  sums_[static_cast<std::size_t>(shard)].fetch_add(sum, std::memory_order_relaxed);
}

void ContentHasher::add(const io::DenseBlock& block) {
  if (block.is_float32()) add_dense_float32(block.ref.shard, block.ref.row_begin, block.xf);
  else add_dense(block.ref.shard, block.ref.row_begin, block.x);
}

void ContentHasher::add_counts(const io::CsrBlock& block) {
  const Index shard = block.ref.shard;
  if (shard < 0 || static_cast<std::size_t>(shard) >= sums_.size()) return;
  std::uint64_t sum = 0;
  XXH64_state_t* state = XXH64_createState();
  for (Index d = 0; d < block.num_rows(); ++d) {
    const auto b = static_cast<std::size_t>(block.indptr[static_cast<std::size_t>(d)]);
    const auto e = static_cast<std::size_t>(block.indptr[static_cast<std::size_t>(d) + 1]);
    XXH64_reset(state, static_cast<XXH64_hash_t>(block.ref.row_begin + d));
    XXH64_update(state, block.indices.data() + b, (e - b) * sizeof(std::int32_t));
    XXH64_update(state, block.counts.data() + b, (e - b) * sizeof(double));
    sum += XXH64_digest(state);
  }
  XXH64_freeState(state);
  sums_[static_cast<std::size_t>(shard)].fetch_add(sum, std::memory_order_relaxed);
}

std::vector<std::uint64_t> ContentHasher::global(const comm::Communicator& comm) const {
  std::vector<std::int64_t> local(sums_.size());
  for (std::size_t s = 0; s < sums_.size(); ++s) local[s] = static_cast<std::int64_t>(sums_[s].load());
  const std::vector<std::int64_t> all = comm.size() > 1 ? comm.allgatherv(std::span<const std::int64_t>(local)) : local;
  std::vector<std::uint64_t> out(sums_.size(), 0);
  for (std::size_t i = 0; i < all.size(); ++i) out[i % sums_.size()] += static_cast<std::uint64_t>(all[i]);
  return out;
}

std::string content_json(const std::vector<std::string>& shard_paths, const std::vector<std::uint64_t>& hashes) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (std::size_t s = 0; s < shard_paths.size() && s < hashes.size(); ++s)
    j[std::filesystem::path(shard_paths[s]).filename().string()] = fmt::format("{:016x}", hashes[s]);
  return j.dump();
}

std::string content_difference(const std::string& checkpoint, const std::string& current) {
  if (checkpoint == current) return "";
  nlohmann::json a, b;
  try {
    a = nlohmann::json::parse(checkpoint);
    b = nlohmann::json::parse(current);
  } catch (const nlohmann::json::exception&) {
    return "the checkpoint's data_content is not readable";
  }
  std::string changed, only_old, only_new;
  const auto add = [](std::string& list, const std::string& name) { list += (list.empty() ? "" : ", ") + name; };
  for (const auto& [name, hash] : a.items()) {
    if (!b.contains(name)) add(only_old, name);
    else if (b[name] != hash) add(changed, name);
  }
  for (const auto& [name, hash] : b.items())
    if (!a.contains(name)) add(only_new, name);
  std::string out;
  if (!changed.empty()) out += "the contents of shard(s) " + changed + " differ from those the checkpoint was made from";
  if (!only_old.empty()) out += std::string(out.empty() ? "" : "; ") + "shard(s) " + only_old + " are missing";
  if (!only_new.empty()) out += std::string(out.empty() ? "" : "; ") + "shard(s) " + only_new + " are new";
  return out.empty() ? "the shards' contents differ" : out;
}

}  // namespace latent::train
