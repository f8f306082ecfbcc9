// engine/json_line.h and the accounting log's records (engine/accounting_log.h): the hand-written
// writer must print exactly what nlohmann::ordered_json::dump(-1, ' ', false, replace) printed
// before it (the log format is an interface), for hostile server text too — every control
// character, quotes and backslashes, well-formed multi-byte UTF-8 at the range edges, and
// ill-formed UTF-8 (stray continuation bytes, overlongs, surrogates, code points above U+10FFFF,
// sequences cut short mid-string and at the end) — and nlohmann's parser must read it back.
#include "engine/json_line.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/accounting_log.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace mxb {
namespace {

std::string Nlohmann(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string Ours(absl::string_view s) {
  std::string out;
  AppendJsonString(s, &out);
  return out;
}

TEST(JsonLine, StringsAsNlohmannDumpsThem) {
  const std::vector<std::string> cases = {
      "",
      "250 2.0.0 Ok: queued as 4Xyz",
      "quote \" backslash \\ slash /",
      std::string("nul \0 inside", 12),
      "\b\f\n\r\t\x01\x1f\x7f",
      "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\xA7",  // é € 📧
      "\xC2\x80 \xDF\xBF \xE0\xA0\x80 \xEF\xBF\xBF \xF0\x90\x80\x80 \xF4\x8F\xBF\xBF",  // edges
      "\x80",                  // lone continuation byte
      "\xBF\xBFok",            // two of them
      "\xC0\xAF",              // overlong '/'
      "\xC1\xBF",              // overlong
      "\xE0\x80\xAF",          // overlong 3-byte
      "\xED\xA0\x80",          // surrogate U+D800
      "\xF0\x80\x80\xAF",      // overlong 4-byte
      "\xF4\x90\x80\x80",      // above U+10FFFF
      "\xF5\x80\x80\x80",      // never a lead byte
      "\xFF\xFE",
      "\xC3",                  // cut at the end
      "\xE2\x82",              // cut at the end
      "\xF0\x9F\x93",          // cut at the end
      "\xE2\x82x",             // cut mid-string, then ASCII
      "\xE2\x82\xE2\x82\xAC",  // cut, then a good sequence
      "\xF0\x9F\x93\xC3\xA9",  // cut, then a good 2-byte one
      "a\xC3\"b",              // cut, then a quote
      "\xC3\n",                // cut, then a control character
  };
  for (const std::string& s : cases) {
    EXPECT_EQ(Ours(s), Nlohmann(s)) << "input: " << absl::CHexEscape(s);
  }
}

TEST(JsonLine, RandomBytesAsNlohmannDumpsThemAndParseBack) {
  std::mt19937 rng(20261202);
  // Bytes weighted toward what breaks writers: controls, quotes, UTF-8 lead/continuation bytes.
  const std::string alphabet =
      std::string("\x00\x01\x08\x09\x0a\x0c\x0d\x1b\x1f\"\\/ aZ~\x7f", 19) +
      "\x80\x8f\x90\x9f\xa0\xbf\xc0\xc1\xc2\xdf\xe0\xe1\xec\xed\xee\xef\xf0\xf1\xf3\xf4\xf5\xff";
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> length(0, 24);
  for (int n = 0; n < 200000; ++n) {
    std::string s;
    const int len = length(rng);
    for (int i = 0; i < len; ++i) s.push_back(alphabet[pick(rng)]);
    const std::string ours = Ours(s);
    ASSERT_EQ(ours, Nlohmann(s)) << "input: " << absl::CHexEscape(s);
    nlohmann::json back = nlohmann::json::parse(ours, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(back.is_discarded()) << ours;
    ASSERT_TRUE(back.is_string());
  }
}

TEST(JsonLine, ObjectMembersInOrder) {
  std::string out;
  JsonLine j(&out);
  j.Str("a", "x\ny");
  j.Int("n", -42);
  j.Int("big", int64_t{1} << 40);
  j.Bool("t", true);
  j.Bool("f", false);
  j.End();
  EXPECT_EQ(out, "{\"a\":\"x\\ny\",\"n\":-42,\"big\":1099511627776,\"t\":true,\"f\":false}\n");
}

// The accounting log's record before JsonLine, kept here as the reference for its format.
std::string ReferenceRecord(const LogRecord& r) {
  const RecipientOutcome& o = *r.outcome;
  nlohmann::ordered_json j;
  j["time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", r.time, absl::UTCTimeZone());
  j["status"] = r.status_override.empty() ? ToString(o.klass) : std::string(r.status_override);
  j["msgid"] = std::string(r.message_id);
  if (!r.job.empty()) j["job"] = std::string(r.job);
  if (!r.envid.empty()) j["envid"] = std::string(r.envid);
  j["sender"] = std::string(r.sender);
  j["rcpt"] = std::string(r.recipient);
  j["domain"] = std::string(r.domain);
  j["mx"] = o.attempt.mx;
  j["ip"] = o.attempt.ip;
  j["port"] = o.attempt.port;
  j["tls"] = o.attempt.tls_version.empty() ? "none" : o.attempt.tls_version;
  if (!o.attempt.tls_cipher.empty()) j["cipher"] = o.attempt.tls_cipher;
  if (!o.attempt.tls_version.empty()) j["tls_resumed"] = o.attempt.tls_resumed;
  j["policy"] = o.attempt.policy;
  j["policy_source"] = o.attempt.policy_source;
  if (!o.attempt.violation.empty()) j["policy_violation"] = o.attempt.violation;
  if (!o.attempt.dane.empty()) j["dane"] = o.attempt.dane;
  j["dnssec"] = o.attempt.dnssec;
  j["code"] = o.code;
  j["enhanced"] = o.enhanced;
  j["text"] = o.text;
  if (!r.bounce_class.empty()) j["class"] = std::string(r.bounce_class);
  j["attempt"] = r.attempt;
  j["queue_ms"] = absl::ToInt64Milliseconds(r.queue_time);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string ReferenceQuarantine(absl::Time t, const std::string& file, const std::string& why) {
  nlohmann::ordered_json j;
  j["time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
  j["status"] = "quarantined";
  j["msgid"] = file;
  j["text"] = why;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

TEST(AccountingLog, RecordsAreTheBytesTheNlohmannWriterProduced) {
  std::string tmpl = ::testing::TempDir() + "/acctlog_testXXXXXX";
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::string path = tmpl + "/acct.jsonl";
  absl::StatusOr<std::unique_ptr<AccountingLog>> log = AccountingLog::Open(path);
  ASSERT_TRUE(log.ok()) << log.status();

  std::vector<RecipientOutcome> outcomes(4);
  outcomes[0].klass = DeliveryClass::kDelivered;
  outcomes[0].code = 250;
  outcomes[0].enhanced = "2.0.0";
  outcomes[0].text = "Ok: queued as ABC";
  outcomes[0].attempt = {"mx1.d1.example", "127.0.0.2", 25, "TLSv1.3", "TLS_AES_128_GCM_SHA256",
                         true, "dane", "dane", true, "", "3 1 1"};
  outcomes[1].klass = DeliveryClass::kDeferred;
  outcomes[1].code = 451;
  outcomes[1].enhanced = "4.7.1";
  outcomes[1].text = "try \"later\"\r\n\x01 caf\xC3\xA9 \xC3 \xFF\\";  // hostile server text
  outcomes[1].attempt.mx = "mx2.d\xE2\x82.example";
  outcomes[1].attempt.violation = "would refuse: no STARTTLS";
  outcomes[2].klass = DeliveryClass::kBounced;
  outcomes[2].code = 550;
  outcomes[2].enhanced = "5.1.1";
  outcomes[2].text = "no such user";
  outcomes[3].klass = DeliveryClass::kDeferred;  // expired below (status override)
  const absl::Time t0 = absl::FromUnixMillis(1764633600123);
  std::vector<LogRecord> records;
  std::vector<std::string> texts = {"1.eml", "job-7", "env\"id", "bounce@esp.example",
                                    "u@d1.example", "d1.example"};
  for (size_t i = 0; i < outcomes.size(); ++i) {
    LogRecord r;
    r.time = t0 + absl::Milliseconds(i < 2 ? 0 : 1500 * i);  // two share a time, then new ones
    r.message_id = texts[0];
    if (i % 2 == 0) r.job = texts[1];
    if (i == 1) r.envid = texts[2];
    r.sender = i == 2 ? absl::string_view() : absl::string_view(texts[3]);
    r.recipient = texts[4];
    r.domain = texts[5];
    r.outcome = &outcomes[i];
    r.attempt = static_cast<int>(i) + 1;
    r.queue_time = absl::Milliseconds(1234 * i);
    if (i == 3) r.status_override = "expired";
    if (i >= 1) r.bounce_class = "policy";
    records.push_back(r);
  }
  std::string expected;
  for (const LogRecord& r : records) {
    (*log)->Append(r);
    expected += ReferenceRecord(r);
  }
  (*log)->AppendQuarantine(t0, "bad\n.eml", "line 3: x-receiver without '@' \xC0");
  expected += ReferenceQuarantine(t0, "bad\n.eml", "line 3: x-receiver without '@' \xC0");
  EXPECT_EQ((*log)->buffered(), expected);
  ASSERT_TRUE((*log)->Flush().ok());
  // A second batch after the flush (the buffer is reused) appends, never repeats.
  (*log)->Append(records[0]);
  expected += ReferenceRecord(records[0]);
  ASSERT_TRUE((*log)->Flush().ok());
  std::ifstream in(path, std::ios::binary);
  std::stringstream got;
  got << in.rdbuf();
  EXPECT_EQ(got.str(), expected);
  EXPECT_EQ((*log)->records(), 6u);
}

}  // namespace
}  // namespace mxb
