#include "input/amqp_envelope.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "queue/envelope.h"

namespace mxb {
namespace {

absl::string_view Key(const amqp_table_entry_t& e) {
  return absl::string_view(static_cast<const char*>(e.key.bytes), e.key.len);
}

absl::Status HeaderError(absl::string_view key, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("AMQP header ", key, ": ", why));
}

// A string value (longstr 'S' or byte array 'x') without line breaks or NUL.
absl::Status Text(absl::string_view key, const amqp_field_value_t& v, std::string* out) {
  if (v.kind != AMQP_FIELD_KIND_UTF8 && v.kind != AMQP_FIELD_KIND_BYTES) {
    return HeaderError(key, "expected a string");
  }
  out->assign(static_cast<const char*>(v.value.bytes.bytes), v.value.bytes.len);
  if (out->find_first_of("\r\n\0", 0, 3) != std::string::npos) {
    return HeaderError(key, "contains CR, LF or NUL");
  }
  return absl::OkStatus();
}

bool Integer(const amqp_field_value_t& v, int64_t* out) {
  switch (v.kind) {
    case AMQP_FIELD_KIND_I8: *out = v.value.i8; return true;
    case AMQP_FIELD_KIND_U8: *out = v.value.u8; return true;
    case AMQP_FIELD_KIND_I16: *out = v.value.i16; return true;
    case AMQP_FIELD_KIND_U16: *out = v.value.u16; return true;
    case AMQP_FIELD_KIND_I32: *out = v.value.i32; return true;
    case AMQP_FIELD_KIND_U32: *out = v.value.u32; return true;
    case AMQP_FIELD_KIND_I64: *out = v.value.i64; return true;
    default: return false;
  }
}

}  // namespace

absl::StatusOr<std::string> SpoolFileForAmqp(const amqp_table_t* headers,
                                             absl::string_view body) {
  const amqp_field_value_t* sender = nullptr;
  if (headers != nullptr) {
    for (int i = 0; i < headers->num_entries; ++i) {
      if (Key(headers->entries[i]) == "x-sender") sender = &headers->entries[i].value;
    }
  }
  if (sender == nullptr) {
    if (headers != nullptr) {
      for (int i = 0; i < headers->num_entries; ++i) {
        if (Key(headers->entries[i]) == "x-receiver") {
          return HeaderError("x-receiver", "without an x-sender header");
        }
      }
    }
    return std::string(body);  // the body form
  }
  std::string envelope, value;
  if (absl::Status s = Text("x-sender", *sender, &value); !s.ok()) return s;
  absl::StrAppend(&envelope, "x-sender: ", value, "\n");
  bool receivers = false;
  for (int i = 0; i < headers->num_entries; ++i) {
    const amqp_table_entry_t& e = headers->entries[i];
    const absl::string_view key = Key(e);
    if (key == "x-receiver") {
      std::vector<const amqp_field_value_t*> list;
      if (e.value.kind == AMQP_FIELD_KIND_ARRAY) {
        for (int k = 0; k < e.value.value.array.num_entries; ++k) {
          list.push_back(&e.value.value.array.entries[k]);
        }
      } else {
        list.push_back(&e.value);
      }
      for (size_t k = 0; k < list.size(); ++k) {
        const std::string name = list.size() > 1 || e.value.kind == AMQP_FIELD_KIND_ARRAY
                                     ? absl::StrCat("x-receiver[", k, "]")
                                     : std::string("x-receiver");
        if (absl::Status s = Text(name, *list[k], &value); !s.ok()) return s;
        absl::StrAppend(&envelope, "x-receiver: ", value, "\n");
        receivers = true;
      }
    } else if (key == "x-envid" || key == "x-job") {
      if (absl::Status s = Text(key, e.value, &value); !s.ok()) return s;
      absl::StrAppend(&envelope, key, ": ", value, "\n");
    } else if (key == "x-requiretls") {
      if (e.value.kind == AMQP_FIELD_KIND_BOOLEAN) {
        value = e.value.value.boolean ? "yes" : "no";
      } else if (absl::Status s = Text(key, e.value, &value); !s.ok()) {
        return HeaderError(key, "expected \"yes\", \"no\" or a boolean");
      }
      absl::StrAppend(&envelope, key, ": ", value, "\n");
    } else if (key == "x-priority") {
      int64_t n = 0;
      if (Integer(e.value, &n)) {
        value = absl::StrCat(n);
      } else if (absl::Status s = Text(key, e.value, &value); !s.ok()) {
        return HeaderError(key, "expected an integer");
      }
      absl::StrAppend(&envelope, key, ": ", value, "\n");
    }
  }
  if (!receivers) return HeaderError("x-receiver", "missing (x-sender is a header)");
  std::string file = absl::StrCat(envelope, body);
  absl::StatusOr<Envelope> parsed = ParseEnvelope(file);
  if (!parsed.ok()) {
    // The envelope parser's message names the key ("line 2: x-receiver ..."): our lines are
    // in header order, x-sender first.
    return absl::InvalidArgumentError(
        absl::StrCat("AMQP headers as envelope: ", parsed.status().message()));
  }
  if (parsed->body_offset != envelope.size()) {
    return absl::InvalidArgumentError(
        "AMQP headers carry the envelope, but the message body starts with envelope lines too "
        "(x-sender:, x-receiver:, ...): refused, they would add recipients");
  }
  return file;
}

}  // namespace mxb
