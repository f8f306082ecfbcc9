// HasTlsRequiredNo (RFC 8689 §5): the header field, never the body.
#include "engine/requiretls.h"

#include <gtest/gtest.h>

namespace mxb {
namespace {

TEST(TlsRequiredNo, Table) {
  struct Case {
    const char* message;
    bool no;
  };
  const Case cases[] = {
      {"TLS-Required: No\r\nSubject: x\r\n\r\nbody\r\n", true},
      {"Subject: x\nTLS-Required: no\n\nbody\n", true},
      {"Subject: x\ntls-required:NO \n\nbody\n", true},
      {"Subject: x\nTLS-Required:\n No\n\nbody\n", true},  // folded
      {"TLS-Required: Yes\n\n", false},
      {"TLS-Required: Nope\n\n", false},
      {"X-TLS-Required: No\n\n", false},
      {"Subject: x\n\nTLS-Required: No\n", false},  // in the body
      {"Subject: x\r\n\r\nTLS-Required: No\r\n", false},
      {"", false},
      {"TLS-Required: No", true},  // no body at all
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    EXPECT_EQ(HasTlsRequiredNo(c.message), c.no);
  }
}

}  // namespace
}  // namespace mxb
