// ResolveMxAndTlsa (engine/dane_lookup.h).
#include "engine/dane_lookup.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tls/policy.h"

namespace mxb {

namespace {

// RFC 7672 §2.2.3: a secure CNAME chain moves the TLSA base name to the expanded name first;
// only an authenticated denial there sends the lookup back to the original name.
void ResolveHostTlsa(Resolver* resolver, const MxResult& mx, const MxHost& h, uint16_t port,
                     std::function<void(HopDnsFacts)> done) {
  if (h.canonical.empty()) {
    resolver->ResolveTlsa(h.name, port, [mx, h, done = std::move(done)](const TlsaResult& t) {
      done(TlsaFacts(mx, h, t));
    });
    return;
  }
  resolver->ResolveTlsa(h.canonical, port, [resolver, mx, h, port,
                                            done = std::move(done)](const TlsaResult& t) {
    HopDnsFacts f = TlsaFacts(mx, h, t);
    if (f.tlsa != TlsaLookup::kDenied) {
      done(std::move(f));
      return;
    }
    resolver->ResolveTlsa(h.name, port, [mx, h, done](const TlsaResult& t2) {
      done(TlsaFacts(mx, h, t2));
    });
  });
}

}  // namespace

HopDnsFacts TlsaFacts(const MxResult& mx, const MxHost& host, const TlsaResult& t) {
  HopDnsFacts f;
  f.mx_dnssec = mx.dnssec;
  f.host_dnssec = host.dnssec;
  switch (t.status) {
    case DnsStatus::kOk:
      if (!t.dnssec) {
        f.tlsa = TlsaLookup::kInsecure;
        break;
      }
      {
        std::vector<DaneRecord> rrset;
        rrset.reserve(t.records.size());
        for (const TlsaRecord& r : t.records) {
          rrset.push_back(DaneRecord{r.usage, r.selector, r.matching_type, r.data});
        }
        // RFC 7672 §3.2.2: a DANE-TA leaf must carry the MX host name, or the next-hop domain;
        // §2.2.3: behind a secure CNAME also the expanded name.
        std::vector<std::string> names = {host.name, mx.domain};
        if (!host.canonical.empty()) names.insert(names.begin(), host.canonical);
        f.dane = DaneAuthority::Make(rrset, names);
      }
      f.tlsa = TlsaLookup::kFound;
      break;
    case DnsStatus::kNxDomain:
    case DnsStatus::kNoData:
      // Validated denial = no TLSA; an unvalidated one says nothing either way.
      f.tlsa = t.dnssec ? TlsaLookup::kDenied : TlsaLookup::kInsecure;
      break;
    default:
      f.tlsa = TlsaLookup::kFailed;
      f.tlsa_error = t.error.empty() ? std::string(ToString(t.status)) : t.error;
      break;
  }
  return f;
}

void ResolveMxAndTlsa(Resolver* resolver, absl::string_view domain, uint16_t port,
                      uint16_t smtps_port, bool dane, MxAndTlsaCallback done) {
  resolver->ResolveMx(domain, [resolver, port, smtps_port, dane,
                               done = std::move(done)](const MxResult& mx) {
    struct Gather {
      MxResult mx;
      std::vector<HopDnsFacts> facts;
      size_t pending = 1;  // +1 while queries are being issued (callbacks may run inline)
      MxAndTlsaCallback done;
    };
    auto g = std::make_shared<Gather>();
    g->mx = mx;
    g->done = done;
    g->facts.resize(mx.hosts.size());
    for (size_t i = 0; i < mx.hosts.size(); ++i) {
      g->facts[i].mx_dnssec = mx.dnssec;
      g->facts[i].host_dnssec = mx.hosts[i].dnssec;
    }
    auto finish = [](const std::shared_ptr<Gather>& s) {
      if (--s->pending == 0) s->done(s->mx, std::move(s->facts));
    };
    if (dane && mx.status == DnsStatus::kOk && mx.dnssec) {
      for (size_t i = 0; i < mx.hosts.size(); ++i) {
        const MxHost& h = mx.hosts[i];
        if (!h.dnssec || h.addresses.empty()) continue;  // RFC 7672 §2.2.2: insecure host
        ++g->pending;
        ResolveHostTlsa(resolver, g->mx, h, port, [g, i, finish](HopDnsFacts f) {
          // Keep what the implicit-port answer (below) may already have filled in.
          f.implicit_tlsa = g->facts[i].implicit_tlsa;
          f.implicit_dane = std::move(g->facts[i].implicit_dane);
          g->facts[i] = std::move(f);
          finish(g);
        });
        if (smtps_port != 0 && smtps_port != port && HasSmtpsPrefix(h.name)) {
          ++g->pending;
          ResolveHostTlsa(resolver, g->mx, h, smtps_port, [g, i, finish](HopDnsFacts f) {
            g->facts[i].implicit_tlsa = f.tlsa;
            g->facts[i].implicit_dane = std::move(f.dane);
            finish(g);
          });
        }
      }
    }
    finish(g);
  });
}

}  // namespace mxb
