// Config loading, the step before toml++: the file's text made ASCII (engine/config_file.cc).
// Pure function, any thread.
//
// toml++ only ever sees ASCII. Debian's toml++ 3.3 reaches `unreachable` (undefined behaviour)
// when it classifies a code point in U+00A1..U+0499 (é, ü, ...) as whitespace or not
// (is_non_ascii_horizontal_whitespace), which it does on a non-ASCII bare key such as
// [domain.bücher.example] and on malformed input found by tests/fuzz/fuzz_config. So, before
// toml++: non-ASCII outside strings and comments is an error naming its line (TOML 1.0 allows
// it nowhere else: bare keys are A-Za-z0-9_-); inside basic strings it becomes \uXXXX escapes;
// literal strings become basic strings with the same value (backslash and quote escaped);
// comments keep their ASCII. Line numbers stay the same, so toml++'s errors still point right.
//
//   absl::StatusOr<std::string> ascii = AsciiForToml(text, "mxburst.toml");
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mxb {

// `text` with non-ASCII inside strings escaped; an error naming `name` and the line for
// non-ASCII anywhere else.
absl::StatusOr<std::string> AsciiForToml(absl::string_view text, const std::string& name);

}  // namespace mxb
