#include "input/amqp_connection.h"

#include <amqp_tcp_socket.h>

#include "absl/strings/str_cat.h"

namespace mxb {

absl::Status ParseAmqpUrl(const std::string& url, AmqpUrl* out) {
  out->buffer.assign(url.begin(), url.end());
  out->buffer.push_back('\0');
  amqp_default_connection_info(&out->info);
  if (amqp_parse_url(out->buffer.data(), &out->info) != AMQP_STATUS_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected amqp://[user[:password]@]host[:port][/vhost], got '", url, "'"));
  }
  // "amqp://host/" parses as the empty vhost, which no broker has: it means the default "/".
  static char kDefaultVhost[] = "/";
  if (out->info.vhost == nullptr || out->info.vhost[0] == '\0') out->info.vhost = kDefaultVhost;
  return absl::OkStatus();
}

std::string AmqpReplyText(const amqp_rpc_reply_t& r, const char* what) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL: return "";
    case AMQP_RESPONSE_NONE: return absl::StrCat(what, ": no reply");
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return absl::StrCat(what, ": ", amqp_error_string2(r.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD || r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        // Both close methods start with reply_code and reply_text.
        const auto* m = static_cast<const amqp_channel_close_t*>(r.reply.decoded);
        return absl::StrCat(what, ": ", m->reply_code, " ",
                            std::string(static_cast<const char*>(m->reply_text.bytes),
                                        m->reply_text.len));
      }
      return absl::StrCat(what, ": server exception");
  }
  return absl::StrCat(what, ": unknown reply");
}

AmqpChannel::~AmqpChannel() {
  if (conn_ == nullptr) return;
  if (open_) {
    amqp_channel_close(conn_, kChannel, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
  }
  amqp_destroy_connection(conn_);
}

absl::Status AmqpChannel::Open(const std::string& url_text) {
  AmqpUrl url;
  if (absl::Status s = ParseAmqpUrl(url_text, &url); !s.ok()) return s;
  where_ = absl::StrCat(url.info.host, ":", url.info.port);
  conn_ = amqp_new_connection();
  amqp_socket_t* socket = amqp_tcp_socket_new(conn_);
  if (socket == nullptr) return absl::InternalError("amqp_tcp_socket_new failed");
  timeval tv{2, 0};
  if (int rc = amqp_socket_open_noblock(socket, url.info.host, url.info.port, &tv); rc != 0) {
    return absl::UnavailableError(absl::StrCat(where_, ": connect: ", amqp_error_string2(rc)));
  }
  std::string e = AmqpReplyText(amqp_login(conn_, url.info.vhost, 0, 131072, kHeartbeatSeconds,
                                           AMQP_SASL_METHOD_PLAIN, url.info.user,
                                           url.info.password),
                                "login");
  if (!e.empty()) return absl::UnavailableError(absl::StrCat(where_, ": ", e));
  amqp_channel_open(conn_, kChannel);
  open_ = true;
  return Check("channel.open");
}

absl::Status AmqpChannel::Check(const char* what) {
  const std::string e = AmqpReplyText(amqp_get_rpc_reply(conn_), what);
  if (e.empty()) return absl::OkStatus();
  open_ = false;
  return absl::UnavailableError(absl::StrCat(where_, ": ", e));
}

}  // namespace mxb
