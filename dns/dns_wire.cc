#include "dns/dns_wire.h"

#include <ares.h>
#include <arpa/inet.h>
#include <idn2.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace mxb::dns_wire {
namespace {

constexpr uint16_t kClassIn = 1;
constexpr size_t kHeaderSize = 12;

uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t Get32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}

// RFC 2181 §8: a TTL with the top bit set is treated as zero.
uint32_t SaneTtl(uint32_t ttl) { return (ttl & 0x80000000u) ? 0 : ttl; }

// Expands the (possibly compressed) name at abuf[off]. Lower case, no trailing dot, "" = root.
bool ExpandName(const uint8_t* abuf, size_t alen, size_t off, std::string* name, size_t* enclen) {
  if (off >= alen) return false;
  char* s = nullptr;
  long len = 0;
  if (ares_expand_name(abuf + off, abuf, static_cast<int>(alen), &s, &len) != ARES_SUCCESS) {
    return false;
  }
  name->assign(s);
  ares_free_string(s);
  if (len <= 0 || off + static_cast<size_t>(len) > alen) return false;
  *enclen = static_cast<size_t>(len);
  if (!name->empty() && name->back() == '.') name->pop_back();
  if (*name == ".") name->clear();
  absl::AsciiStrToLower(name);
  return true;
}

struct Rr {
  std::string owner;
  uint16_t type = 0;
  uint16_t klass = 0;
  uint32_t ttl = 0;
  size_t rdata = 0;  // offset in abuf
  uint16_t rdlen = 0;
};

bool ReadRr(const uint8_t* abuf, size_t alen, size_t* off, Rr* rr) {
  size_t enclen = 0;
  if (!ExpandName(abuf, alen, *off, &rr->owner, &enclen)) return false;
  size_t p = *off + enclen;
  if (p + 10 > alen) return false;
  rr->type = Get16(abuf + p);
  rr->klass = Get16(abuf + p + 2);
  rr->ttl = SaneTtl(Get32(abuf + p + 4));
  rr->rdlen = Get16(abuf + p + 8);
  rr->rdata = p + 10;
  if (rr->rdata + rr->rdlen > alen) return false;
  *off = rr->rdata + rr->rdlen;
  return true;
}

// Decodes one RR of the asked type into `out`; a malformed RR is skipped (not counted).
bool DecodeRdata(const uint8_t* abuf, size_t alen, const Rr& rr, ParsedAnswer* out) {
  const uint8_t* d = abuf + rr.rdata;
  switch (rr.type) {
    case kTypeA: {
      if (rr.rdlen != 4) return false;
      sockaddr_storage ss{};
      auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
      sin->sin_family = AF_INET;
      std::memcpy(&sin->sin_addr, d, 4);
      out->addresses.push_back(ss);
      return true;
    }
    case kTypeAaaa: {
      if (rr.rdlen != 16) return false;
      sockaddr_storage ss{};
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
      sin6->sin6_family = AF_INET6;
      std::memcpy(&sin6->sin6_addr, d, 16);
      out->addresses.push_back(ss);
      return true;
    }
    case kTypeMx: {
      if (rr.rdlen < 3) return false;
      MxRecord mx;
      mx.preference = Get16(d);
      size_t enclen = 0;
      if (!ExpandName(abuf, alen, rr.rdata + 2, &mx.exchange, &enclen)) return false;
      if (2 + enclen > rr.rdlen) return false;
      out->mx.push_back(std::move(mx));
      return true;
    }
    case kTypeTxt: {
      std::string text;
      size_t i = 0;
      while (i < rr.rdlen) {
        size_t n = d[i];
        if (i + 1 + n > rr.rdlen) return false;
        text.append(reinterpret_cast<const char*>(d + i + 1), n);
        i += 1 + n;
      }
      out->txt.push_back(std::move(text));
      return true;
    }
    case kTypeTlsa: {
      // RFC 6698 §2.1: usage, selector, matching type, certificate association data.
      if (rr.rdlen < 3) return false;
      TlsaRecord t;
      t.usage = d[0];
      t.selector = d[1];
      t.matching_type = d[2];
      t.data.assign(reinterpret_cast<const char*>(d + 3), rr.rdlen - 3);
      out->tlsa.push_back(std::move(t));
      return true;
    }
    default:
      return false;
  }
}

bool IsLdhChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

}  // namespace

const char* TypeName(uint16_t type) {
  switch (type) {
    case kTypeA: return "A";
    case kTypeCname: return "CNAME";
    case kTypeSoa: return "SOA";
    case kTypeMx: return "MX";
    case kTypeTxt: return "TXT";
    case kTypeAaaa: return "AAAA";
    case kTypeTlsa: return "TLSA";
    default: return "TYPE?";
  }
}

const char* RcodeName(int rcode) {
  switch (rcode) {
    case 0: return "NOERROR";
    case 1: return "FORMERR";
    case 2: return "SERVFAIL";
    case 3: return "NXDOMAIN";
    case 4: return "NOTIMP";
    case 5: return "REFUSED";
    case -1: return "malformed answer";
    default: return "unexpected RCODE";
  }
}

absl::StatusOr<std::vector<uint8_t>> BuildQuery(absl::string_view name, uint16_t type,
                                                bool dnssec_ok) {
  unsigned char* buf = nullptr;
  int len = 0;
  std::string n(name);
  // id 0: ares_send assigns its own random query id.
  int rc = ares_create_query(n.c_str(), kClassIn, type, 0, /*rd=*/1, &buf, &len, kEdnsUdpSize);
  if (rc != ARES_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("query for ", TypeName(type), " '", name, "': ", ares_strerror(rc)));
  }
  std::vector<uint8_t> q(buf, buf + len);
  ares_free_string(buf);
  if (q.size() < kHeaderSize + 11) {
    return absl::InternalError(absl::StrCat("query for '", name, "' too short"));
  }
  q[3] |= 0x20;  // AD: RFC 6840 §5.7
  // The OPT RR is last: root(1) type(2) class(2) ext-rcode(1) version(1) flags(2) rdlen(2);
  // DO is the top bit of the flags.
  if (dnssec_ok) q[q.size() - 4] |= 0x80;
  return q;
}

ParsedAnswer ParseAnswer(const uint8_t* abuf, size_t alen, absl::string_view qname,
                         uint16_t qtype) {
  ParsedAnswer out;
  if (abuf == nullptr || alen < kHeaderSize) {
    out.error = absl::StrCat("answer of ", alen, " bytes is shorter than a header");
    return out;
  }
  if ((abuf[2] & 0x80) == 0) {
    out.error = "QR bit not set";
    return out;
  }
  out.truncated = (abuf[2] & 0x02) != 0;
  out.authenticated = (abuf[3] & 0x20) != 0;
  const int rcode = abuf[3] & 0x0F;
  const uint16_t qdcount = Get16(abuf + 4);
  const uint16_t ancount = Get16(abuf + 6);
  const uint16_t nscount = Get16(abuf + 8);

  size_t off = kHeaderSize;
  for (uint16_t i = 0; i < qdcount; ++i) {
    std::string ignored;
    size_t enclen = 0;
    if (!ExpandName(abuf, alen, off, &ignored, &enclen) || off + enclen + 4 > alen) {
      out.error = "question section truncated";
      return out;
    }
    off += enclen + 4;
  }
  std::vector<Rr> answers;
  answers.reserve(ancount);
  for (uint16_t i = 0; i < ancount; ++i) {
    Rr rr;
    if (!ReadRr(abuf, alen, &off, &rr)) {
      out.error = absl::StrCat("answer RR ", i, " of ", ancount, " malformed");
      return out;
    }
    answers.push_back(std::move(rr));
  }
  // Authority: only the SOA matters (negative caching). A truncated authority section does not
  // spoil the answer we already have.
  for (uint16_t i = 0; i < nscount; ++i) {
    Rr rr;
    if (!ReadRr(abuf, alen, &off, &rr)) break;
    if (rr.type != kTypeSoa || rr.klass != kClassIn) continue;
    size_t p = rr.rdata;
    std::string ignored;
    size_t enclen = 0;
    bool ok = ExpandName(abuf, alen, p, &ignored, &enclen);  // MNAME
    p += enclen;
    ok = ok && ExpandName(abuf, alen, p, &ignored, &enclen);  // RNAME
    p += enclen;
    if (!ok || p + 20 > rr.rdata + rr.rdlen) continue;
    uint32_t minimum = SaneTtl(Get32(abuf + p + 16));
    out.negative_ttl = std::min(rr.ttl, minimum);
  }

  std::string name = absl::AsciiStrToLower(qname);
  if (!name.empty() && name.back() == '.') name.pop_back();
  uint32_t ttl = std::numeric_limits<uint32_t>::max();
  out.cname_chain.push_back(name);
  for (int hop = 0;; ++hop) {
    for (const Rr& rr : answers) {
      if (rr.type != qtype || rr.klass != kClassIn || rr.owner != name) continue;
      if (DecodeRdata(abuf, alen, rr, &out)) {
        ++out.records;
        ttl = std::min(ttl, rr.ttl);
      }
    }
    if (out.records > 0 || qtype == kTypeCname) break;
    const Rr* cname = nullptr;
    for (const Rr& rr : answers) {
      if (rr.type == kTypeCname && rr.klass == kClassIn && rr.owner == name) {
        cname = &rr;
        break;
      }
    }
    if (cname == nullptr) break;
    std::string target;
    size_t enclen = 0;
    if (!ExpandName(abuf, alen, cname->rdata, &target, &enclen)) break;
    if (std::find(out.cname_chain.begin(), out.cname_chain.end(), target) !=
        out.cname_chain.end()) {
      out.cname_error = absl::StrCat("CNAME loop: ", absl::StrJoin(out.cname_chain, " -> "),
                                     " -> ", target);
      break;
    }
    if (hop == kMaxCnameHops) {
      out.cname_error = absl::StrCat("CNAME chain longer than ", kMaxCnameHops, " from ",
                                     out.cname_chain.front());
      break;
    }
    ttl = std::min(ttl, cname->ttl);
    name = std::move(target);
    out.cname_chain.push_back(name);
  }
  out.canonical = std::move(name);
  out.ttl = out.records > 0 ? ttl : 0;
  out.rcode = rcode;
  return out;
}

bool IsAddressLiteral(absl::string_view name) {
  if (name.empty()) return false;
  if (name.front() == '[') return true;  // RFC 5321 §4.1.3 address-literal syntax
  std::string s(name);
  if (!s.empty() && s.back() == '.') s.pop_back();
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, s.c_str(), &a4) == 1 || inet_pton(AF_INET6, s.c_str(), &a6) == 1;
}

absl::StatusOr<std::string> NormalizeName(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("empty domain name");
  if (IsAddressLiteral(name)) {
    return absl::InvalidArgumentError(absl::StrCat("'", name, "' is an address literal"));
  }
  std::string out;
  bool ascii = std::all_of(name.begin(), name.end(),
                           [](char c) { return (static_cast<unsigned char>(c) & 0x80) == 0; });
  if (ascii) {
    out = absl::AsciiStrToLower(name);
  } else {
    std::string in(name);
    char* a = nullptr;
    int rc = idn2_to_ascii_8z(in.c_str(), &a, IDN2_NONTRANSITIONAL);
    if (rc != IDN2_OK) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", name, "': IDN conversion failed: ", idn2_strerror(rc)));
    }
    out = a;
    idn2_free(a);
    absl::AsciiStrToLower(&out);
  }
  if (!out.empty() && out.back() == '.') out.pop_back();
  if (out.empty() || out.size() > 253) {
    return absl::InvalidArgumentError(absl::StrCat("'", name, "': bad length ", out.size()));
  }
  for (absl::string_view label : absl::StrSplit(out, '.')) {
    if (label.empty() || label.size() > 63) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", name, "': label of ", label.size(), " characters"));
    }
    for (char c : label) {
      if (!IsLdhChar(c)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", name, "': character 0x", absl::Hex(static_cast<unsigned char>(c)),
            " not allowed in a host name"));
      }
    }
  }
  return out;
}

}  // namespace mxb::dns_wire
