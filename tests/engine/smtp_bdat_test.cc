// BDAT form of an encoded message (engine/smtp_bdat.h): the chunks are exactly the message as
// a receiver stores it (NormalizeLineEndings), cut at the chunk size, with or without recorded
// stuffed-dot offsets, and stale offsets are never trusted.
#include "engine/smtp_bdat.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "engine/smtp_data.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

std::string Join(const std::vector<BdatChunk>& chunks) {
  std::string out;
  for (const BdatChunk& c : chunks) {
    size_t n = 0;
    for (absl::string_view p : c.pieces) {
      out.append(p.data(), p.size());
      n += p.size();
    }
    EXPECT_EQ(n, c.size);
  }
  return out;
}

struct Case {
  const char* name;
  std::string body;
};

TEST(BdatChunks, TableOfBodies) {
  const Case cases[] = {
      {"plain", "Subject: x\n\nhello\n"},
      {"leading dot", ".a\n"},
      {"dot lines", "Subject: x\r\n\r\n.\r\n..\r\n.x\r\nend"},
      {"only dots", ".\n.\n.\n"},
      {"smuggling attempt", "a\n.\nb\r.\rc\r\n.\r\n"},
      {"empty", ""},
      {"long line with dot", "." + std::string(3000, 'x') + "\n.y\n"},
      {"nul before dot", "\0.x\n"},
  };
  for (const Case& c : cases) {
    std::string wire;
    std::vector<uint32_t> dots;
    AppendDataWire(c.body, &wire, &dots);
    EXPECT_EQ(dots, FindStuffedDots(wire)) << c.name;
    EXPECT_TRUE(StuffedDotsMatch(wire, dots)) << c.name;
    const std::string expected = NormalizeLineEndings(c.body);
    for (uint64_t max : {uint64_t{0}, uint64_t{1}, uint64_t{7}, uint64_t{1000}}) {
      std::vector<BdatChunk> chunks = BdatChunks(wire, &dots, max);
      ASSERT_FALSE(chunks.empty()) << c.name;
      EXPECT_EQ(Join(chunks), expected) << c.name << " max=" << max;
      for (size_t i = 0; i < chunks.size(); ++i) {
        if (max == 0) continue;
        EXPECT_LE(chunks[i].size, max) << c.name;
        // Only the last chunk may be short: the others are full.
        if (i + 1 < chunks.size()) {
          EXPECT_EQ(chunks[i].size, max) << c.name;
        }
      }
      EXPECT_EQ(Join(BdatChunks(wire, nullptr, max)), expected) << c.name;  // scanned
    }
  }
}

TEST(BdatChunks, CommonMessageIsOneViewOfTheWire) {
  std::string wire;
  std::vector<uint32_t> dots;
  AppendDataWire("Subject: x\n\nno dot lines here\n", &wire, &dots);
  std::vector<BdatChunk> chunks = BdatChunks(wire, &dots, 1 << 20);
  ASSERT_EQ(chunks.size(), 1u);
  ASSERT_EQ(chunks[0].pieces.size(), 1u);
  EXPECT_EQ(chunks[0].pieces[0].data(), wire.data());  // no copy
  EXPECT_EQ(chunks[0].size, wire.size() - 3);
}

// Offsets recorded for another buffer (a header put in front of the wire after encoding) must
// not cut dots out of the wrong places: they are rejected and the dots found by scanning.
TEST(BdatChunks, StaleOffsetsAreNotTrusted) {
  std::string wire;
  std::vector<uint32_t> dots;
  AppendDataWire("a\n.b\n..c\n", &wire, &dots);
  const std::string shifted = "X-Added: 1\r\n" + wire;
  EXPECT_FALSE(StuffedDotsMatch(shifted, dots));
  EXPECT_EQ(Join(BdatChunks(shifted, &dots, 0)), "X-Added: 1\r\na\r\n.b\r\n..c\r\n");
  EXPECT_FALSE(StuffedDotsMatch(wire, {0}));         // not a dot
  EXPECT_FALSE(StuffedDotsMatch(wire, {3, 3}));      // not ascending
  EXPECT_FALSE(StuffedDotsMatch(wire, {4}));         // not at a line start
}

TEST(BdatChunks, RandomBodiesRoundTrip) {
  std::mt19937 rng(1234);
  const char alphabet[] = {'.', '.', '\r', '\n', '\n', 'a', ' ', '\0'};
  for (int round = 0; round < 2000; ++round) {
    std::string body;
    const size_t n = rng() % 64;
    for (size_t i = 0; i < n; ++i) body.push_back(alphabet[rng() % sizeof(alphabet)]);
    std::string wire;
    std::vector<uint32_t> dots;
    AppendDataWire(body, &wire, &dots);
    ASSERT_EQ(dots, FindStuffedDots(wire)) << absl::CEscape(body);
    const uint64_t max = rng() % 9;
    ASSERT_EQ(Join(BdatChunks(wire, &dots, max)), NormalizeLineEndings(body))
        << absl::CEscape(body);
  }
}

}  // namespace
}  // namespace mxb
