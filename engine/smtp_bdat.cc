// CHUNKING (RFC 3030): the BDAT form of an encoded message, and the part of SmtpSession's
// transaction that sends BDAT chunks and reads their replies (engine/smtp_bdat.h,
// engine/smtp_session.h).
#include "engine/smtp_bdat.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/smtp_session.h"

namespace mxb {
namespace {

constexpr size_t kTerminator = 3;  // "." CRLF after the last line of the DATA wire form

// RFC 5321 §4.2.2/§4.2.4: the server did not recognise the BDAT command (or its argument).
// Such a server has not read the chunk as data: it is reading the message as commands now, and
// no later reply on the connection can be matched to what we sent.
bool ServerMayNotKnowBdat(const SmtpReply& r) {
  return r.code == 500 || r.code == 501 || r.code == 502 || r.code == 504;
}

}  // namespace

std::vector<uint32_t> FindStuffedDots(absl::string_view wire) {
  std::vector<uint32_t> dots;
  if (wire.size() < kTerminator) return dots;
  const size_t body_end = wire.size() - kTerminator;
  size_t p = 0;
  while (p < body_end) {
    if (wire[p] == '.') dots.push_back(static_cast<uint32_t>(p));
    const size_t lf = wire.find('\n', p);
    if (lf == absl::string_view::npos) break;
    p = lf + 1;
  }
  return dots;
}

bool StuffedDotsMatch(absl::string_view wire, const std::vector<uint32_t>& dots) {
  if (wire.size() < kTerminator) return dots.empty();
  const size_t body_end = wire.size() - kTerminator;
  size_t next = 0;  // the lowest offset the next dot may have
  for (uint32_t d : dots) {
    if (d < next || d + 1 >= body_end || wire[d] != '.' || wire[d + 1] != '.') return false;
    if (d != 0 && wire[d - 1] != '\n') return false;
    next = size_t{d} + 2;
  }
  return true;
}

std::vector<BdatChunk> BdatChunks(absl::string_view wire, const std::vector<uint32_t>* dots,
                                  uint64_t max_chunk) {
  std::vector<uint32_t> scanned;
  if (dots == nullptr || !StuffedDotsMatch(wire, *dots)) {
    scanned = FindStuffedDots(wire);
    dots = &scanned;
  }
  if (max_chunk == 0) max_chunk = std::numeric_limits<uint64_t>::max();
  const size_t end = wire.size() >= kTerminator ? wire.size() - kTerminator : 0;
  std::vector<BdatChunk> chunks(1);
  chunks.front().pieces.reserve(dots->size() + 1);
  size_t pos = 0;
  size_t next_dot = 0;
  while (pos < end) {
    const size_t stop = next_dot < dots->size() ? (*dots)[next_dot] : end;
    if (stop <= pos) {  // the stuffed dot itself: not sent
      pos = stop + 1;
      ++next_dot;
      continue;
    }
    if (chunks.back().size == max_chunk) chunks.emplace_back();
    const size_t n = static_cast<size_t>(std::min<uint64_t>(stop - pos,
                                                            max_chunk - chunks.back().size));
    chunks.back().pieces.push_back(wire.substr(pos, n));
    chunks.back().size += n;
    pos += n;
  }
  return chunks;
}

// ---- SmtpSession: the BDAT part of a transaction ---------------------------------------------

uint64_t SmtpSession::MessageSize() const {
  if (!chunking_) return txn_.wire_body.size();
  uint64_t n = 0;
  for (const BdatChunk& c : chunks_) n += c.size;
  return n;  // RFC 1870 §3 with RFC 3030: the octets BDAT sends
}

void SmtpSession::PrepareBdat() {
  chunks_ = BdatChunks(txn_.wire_body, txn_.stuffed_dots, opts_.bdat_chunk_size);
  bdat_lines_.clear();
  bdat_line_end_.clear();
  for (size_t i = 0; i < chunks_.size(); ++i) {
    // RFC 3030 §2: "BDAT" SP chunk-size [SP end-marker]; LAST marks the final chunk.
    absl::StrAppend(&bdat_lines_, "BDAT ", chunks_[i].size,
                    i + 1 == chunks_.size() ? " LAST\r\n" : "\r\n");
    bdat_line_end_.push_back(bdat_lines_.size());
  }
}

void SmtpSession::AppendBdat(uint32_t chunk, Action* a) const {
  const size_t begin = chunk == 0 ? 0 : bdat_line_end_[chunk - 1];
  a->parts.push_back(absl::string_view(bdat_lines_).substr(begin, bdat_line_end_[chunk] - begin));
  a->parts.insert(a->parts.end(), chunks_[chunk].pieces.begin(), chunks_[chunk].pieces.end());
}

Action SmtpSession::OnBdatReply(uint32_t chunk, const SmtpReply& reply) {
  const bool last = chunk + 1 == chunks_.size();
  // Pipelined, the chunks went out before the RCPT replies were in: with nobody accepted (or
  // MAIL refused) the server discards them, and their replies decide nothing.
  const bool nobody = accepted_ == 0 || mail_rejected_;
  if (reply.code != 250) {
    // RFC 3030 §2: a 4xx/5xx to any chunk fails the transaction — the accepted recipients get
    // that reply's verdict (never delivered), and no further chunk is sent.
    if (!bdat_failed_ && !nobody) {
      for (size_t i = 0; i < rcpts_.size(); ++i) {
        if (rcpts_[i].accepted && !rcpts_[i].final) Decide(i, "BDAT", reply);
      }
    }
    bdat_failed_ = true;
    if (reply.klass() != 4 && reply.klass() != 5) return FailAfterProtocolError("BDAT", reply);
    if (ServerMayNotKnowBdat(reply)) {
      EndTransaction();
      const std::string summary = absl::StrCat(reply.code, " ", reply.lines.empty() ? "" : reply.lines.front());
      return Fail(reply.code, absl::StrCat("BDAT refused by a server offering CHUNKING: ", summary),
                  summary, Deferral{});
    }
    // RFC 3030 §2: a pipelining server accepts and discards the chunks already sent after the
    // failed one, and answers each; the transaction ends with the last of those replies.
    if (!last && pipelining_) {
      Action wait;
      state_ = SmtpState::kMail;
      return wait;
    }
    return EndTransactionWithRset();
  }
  if (!last) {
    if (pipelining_) {
      Action wait;  // the next chunk is on the wire already
      state_ = SmtpState::kMail;
      return wait;
    }
    return SendNextCommands();  // RFC 3030 §4.2: without PIPELINING, one chunk per reply
  }
  if (nobody || bdat_failed_) return EndTransactionWithRset();
  // RFC 3030 §2: the reply to BDAT LAST is the reply to the whole message, as the one to the
  // final "." of DATA (RFC 5321 §4.1.1.4).
  for (size_t i = 0; i < rcpts_.size(); ++i) {
    if (rcpts_[i].accepted && !rcpts_[i].final) Decide(i, "BDAT", reply, true);
  }
  return AfterFinalReply(reply);
}

}  // namespace mxb
