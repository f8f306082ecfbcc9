# Writes OUT: a C++ file defining mxb::control::DashboardPage() as the bytes of IN, split into
# raw-string pieces (compilers limit one literal's length; the delimiter cannot occur in HTML).
file(READ ${IN} content)
string(LENGTH "${content}" len)
set(pieces "")
set(pos 0)
while(pos LESS len)
  string(SUBSTRING "${content}" ${pos} 8000 chunk)
  string(APPEND pieces "    R\"mxbpage(${chunk})mxbpage\"\n")
  math(EXPR pos "${pos} + 8000")
endwhile()
file(WRITE ${OUT} "// Generated from control/dashboard.html by control/embed.cmake.\n#include \"control/http_server.h\"\nnamespace mxb::control {\nabsl::string_view DashboardPage() {\n  static const char kPage[] =\n${pieces}    \"\";\n  return absl::string_view(kPage, sizeof(kPage) - 1);\n}\n}  // namespace mxb::control\n")
