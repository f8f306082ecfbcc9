#include "tests/integration/cluster_fixture.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace mxb::testing {
namespace {

constexpr const char* kRabbitServer = "/usr/lib/rabbitmq/bin/rabbitmq-server";
constexpr const char* kEpmd = "/usr/bin/epmd";
constexpr const char* kRedisServer = "/usr/bin/redis-server";

bool Executable(const char* path) { return access(path, X_OK) == 0; }

bool PortFree(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

// `n` consecutive free ports on 127.0.0.1 (AMQP, distribution, epmd) that stay usable across
// a restart of the server: below the kernel's ephemeral range, so that no outgoing connection
// of this machine (other tests, other agents) takes one as its source port while the server is
// down — that happened: a broker restart failed with "dist_port_already_used ... not_erlang".
int StablePortRun(int n) {
  int lo = 32768;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%d", &lo) != 1) lo = 32768;
    std::fclose(f);
  }
  if (lo - n > 10000) {
    uint32_t x = static_cast<uint32_t>(getpid()) * 2654435761u ^
                 static_cast<uint32_t>(absl::ToUnixNanos(absl::Now()));
    for (int attempt = 0; attempt < 200; ++attempt) {
      x = x * 1664525u + 1013904223u;
      const int first = 10000 + static_cast<int>((x >> 8) % static_cast<uint32_t>(lo - n - 10000));
      bool ok = true;
      for (int k = 0; ok && k < n; ++k) ok = PortFree(first + k);
      if (ok) return first;
    }
  }
  return 0;
}

int FreePortRun(int n) {
  if (int p = StablePortRun(n); p > 0) return p;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int first = FreePort("127.0.0.1");
    bool ok = first > 0 && first + n < 65536;
    for (int k = 1; ok && k < n; ++k) ok = PortFree(first + k);
    if (ok) return first;
  }
  return 0;
}

// One AMQP connection with channel 1 open (test side).
class Client {
 public:
  explicit Client(const std::string& url) {
    std::vector<char> buf(url.begin(), url.end());
    buf.push_back('\0');
    amqp_connection_info info;
    amqp_default_connection_info(&info);
    if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK) {
      error_ = "bad url " + url;
      return;
    }
    conn_ = amqp_new_connection();
    amqp_socket_t* s = amqp_tcp_socket_new(conn_);
    timeval tv{2, 0};
    if (amqp_socket_open_noblock(s, info.host, info.port, &tv) != AMQP_STATUS_OK) {
      error_ = "connect failed";
      return;
    }
    if (amqp_login(conn_, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user,
                   info.password).reply_type != AMQP_RESPONSE_NORMAL) {
      error_ = "login failed";
      return;
    }
    amqp_channel_open(conn_, 1);
    if (!Ok("channel.open")) return;
    open_ = true;
  }
  ~Client() {
    if (conn_ == nullptr) return;
    if (open_) {
      amqp_channel_close(conn_, 1, AMQP_REPLY_SUCCESS);
      amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(conn_);
  }
  bool Ok(const char* what) {
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return true;
    error_ = absl::StrCat(what, " failed (reply type ", r.reply_type, ")");
    open_ = false;
    return false;
  }
  bool open() const { return open_; }
  const std::string& error() const { return error_; }
  amqp_connection_state_t conn() { return conn_; }

 private:
  amqp_connection_state_t conn_ = nullptr;
  bool open_ = false;
  std::string error_;
};

}  // namespace

std::string RabbitMqServer::Missing() {
  if (!Executable(kRabbitServer)) return "rabbitmq-server not installed (tools/setup.sh)";
  if (!Executable(kEpmd)) return "epmd not installed (erlang-base, tools/setup.sh)";
  return "";
}

RabbitMqServer::RabbitMqServer(std::string dir) : dir_(std::move(dir)) {
  mkdir(dir_.c_str(), 0755);
  port_ = FreePortRun(3);
  WriteFileOrDie(dir_ + "/enabled_plugins", "[].\n");
  // loopback_users = none: guest may log in (it may anyway from 127.0.0.1). No management
  // plugin, so nothing else listens.
  WriteFileOrDie(dir_ + "/rabbitmq.conf",
                 absl::StrCat("listeners.tcp.1 = 127.0.0.1:", port_, "\nloopback_users = none\n"));
  WriteFileOrDie(dir_ + "/rabbitmq-env.conf", "");
}

RabbitMqServer::~RabbitMqServer() { Stop(); }

bool RabbitMqServer::Start(absl::Duration timeout) {
  const std::string epmd_port = std::to_string(port_ + 2);
  if (!epmd_) {
    epmd_ = std::make_unique<Subprocess>(
        std::vector<std::string>{kEpmd, "-address", "127.0.0.1", "-port", epmd_port},
        dir_ + "/epmd.out", dir_ + "/epmd.err");
  }
  log_ = absl::StrCat(dir_, "/broker-", ++starts_, ".log");
  // env(1) execs the script, which execs erl (RUNNING_UNDER_SYSTEMD: no signal-forwarding
  // shell), so the pid we hold is the broker's own.
  broker_ = std::make_unique<Subprocess>(
      std::vector<std::string>{
          "/usr/bin/env", "HOME=" + dir_,
          absl::StrCat("RABBITMQ_NODENAME=mxbtest", port_, "@localhost"),
          "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1", absl::StrCat("RABBITMQ_NODE_PORT=", port_),
          absl::StrCat("RABBITMQ_DIST_PORT=", port_ + 1), "ERL_EPMD_ADDRESS=127.0.0.1",
          "ERL_EPMD_PORT=" + epmd_port, "RABBITMQ_MNESIA_BASE=" + dir_ + "/mnesia",
          "RABBITMQ_LOG_BASE=" + dir_ + "/log", "RABBITMQ_CONFIG_FILE=" + dir_ + "/rabbitmq.conf",
          "RABBITMQ_ADVANCED_CONFIG_FILE=" + dir_ + "/advanced.config",
          "RABBITMQ_CONF_ENV_FILE=" + dir_ + "/rabbitmq-env.conf",
          "RABBITMQ_ENABLED_PLUGINS_FILE=" + dir_ + "/enabled_plugins",
          "RABBITMQ_PID_FILE=" + dir_ + "/broker.pid", "RUNNING_UNDER_SYSTEMD=true",
          "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1} "
          "-start_epmd false",
          kRabbitServer},
      log_, log_ + ".err");
  return WaitFor([&] { return Client(url()).open(); }, timeout, absl::Milliseconds(250));
}

void RabbitMqServer::Stop() {
  if (!broker_) return;
  broker_->Signal(SIGTERM);
  broker_->Wait(absl::Seconds(60));
  broker_.reset();
}

std::string RabbitMqServer::url() const {
  return absl::StrCat("amqp://guest:guest@127.0.0.1:", port_);
}

std::string RedisServer::Missing() {
  return Executable(kRedisServer) ? "" : "redis-server not installed (tools/setup.sh)";
}

RedisServer::RedisServer(std::string dir) : dir_(std::move(dir)) {
  mkdir(dir_.c_str(), 0755);
  port_ = StablePortRun(1);  // the same port on every start
  if (port_ == 0) port_ = FreePort("127.0.0.1");
}

bool RedisServer::Start(absl::Duration timeout) {
  proc_ = std::make_unique<Subprocess>(
      std::vector<std::string>{kRedisServer, "--bind", "127.0.0.1", "--port",
                               std::to_string(port_), "--save", "", "--appendonly", "no",
                               "--dir", dir_, "--protected-mode", "yes"},
      dir_ + "/redis.out", dir_ + "/redis.err");
  return WaitFor([&] {
    std::ifstream in(dir_ + "/redis.out");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return absl::StrContains(text, "Ready to accept connections");
  }, timeout);
}

void RedisServer::Stop() {
  if (!proc_) return;
  proc_->Signal(SIGKILL);
  proc_->Wait(absl::Seconds(10));
  proc_.reset();
}

std::string RedisServer::url() const { return absl::StrCat("redis://127.0.0.1:", port_); }

absl::Status PublishAmqp(const std::string& url, const std::string& queue,
                         const std::vector<std::string>& bodies,
                         const std::vector<HeaderEnvelope>* envelopes) {
  Client c(url);
  if (!c.open()) return absl::UnavailableError(c.error());
  amqp_connection_state_t conn = c.conn();
  const amqp_bytes_t q = amqp_cstring_bytes(queue.c_str());
  amqp_queue_declare(conn, 1, q, 0, 1, 0, 0, amqp_empty_table);
  if (!c.Ok("queue.declare")) return absl::InternalError(c.error());
  amqp_confirm_select(conn, 1);
  if (!c.Ok("confirm.select")) return absl::InternalError(c.error());
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.delivery_mode = 2;  // persistent
  size_t confirmed = 0;
  auto wait_confirms = [&](size_t until) -> absl::Status {
    while (confirmed < until) {
      amqp_frame_t frame;
      if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK) {
        return absl::UnavailableError("lost the connection waiting for confirms");
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
        auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
        confirmed = ack->multiple ? ack->delivery_tag : confirmed + 1;
      } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
        return absl::InternalError("the broker nacked a message");
      }
    }
    return absl::OkStatus();
  };
  for (size_t i = 0; i < bodies.size(); ++i) {
    amqp_bytes_t body{bodies[i].size(), const_cast<char*>(bodies[i].data())};
    // Header form: x-sender (longstr) and x-receiver (array of longstr), pointing into *envelopes.
    std::vector<amqp_field_value_t> rcpts;
    amqp_table_entry_t entries[2];
    if (envelopes != nullptr) {
      const HeaderEnvelope& e = (*envelopes)[i];
      for (const std::string& r : e.receivers) {
        amqp_field_value_t v{};
        v.kind = AMQP_FIELD_KIND_UTF8;
        v.value.bytes = {r.size(), const_cast<char*>(r.data())};
        rcpts.push_back(v);
      }
      entries[0].key = amqp_cstring_bytes("x-sender");
      entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[0].value.value.bytes = {e.sender.size(), const_cast<char*>(e.sender.data())};
      entries[1].key = amqp_cstring_bytes("x-receiver");
      entries[1].value.kind = AMQP_FIELD_KIND_ARRAY;
      entries[1].value.value.array = {static_cast<int>(rcpts.size()), rcpts.data()};
      props._flags |= AMQP_BASIC_HEADERS_FLAG;
      props.headers = {2, entries};
    }
    if (amqp_basic_publish(conn, 1, amqp_empty_bytes, q, 0, 0, &props, body) != AMQP_STATUS_OK) {
      return absl::UnavailableError("basic.publish failed");
    }
    // At most 500 unconfirmed messages in the air.
    if (i + 1 >= confirmed + 500) {
      if (absl::Status s = wait_confirms(i + 1 - 250); !s.ok()) return s;
    }
  }
  return wait_confirms(bodies.size());
}

int QueueReady(const std::string& url, const std::string& queue) {
  Client c(url);
  if (!c.open()) return -1;
  amqp_queue_declare_ok_t* ok =
      amqp_queue_declare(c.conn(), 1, amqp_cstring_bytes(queue.c_str()), 1, 1, 0, 0,
                         amqp_empty_table);
  if (!c.Ok("queue.declare passive") || ok == nullptr) return -1;
  return static_cast<int>(ok->message_count);
}

absl::Status BindQueue(const std::string& url, const std::string& queue,
                       const std::string& exchange, const std::string& routing_key) {
  Client c(url);
  if (!c.open()) return absl::UnavailableError(c.error());
  const amqp_bytes_t q = amqp_cstring_bytes(queue.c_str());
  amqp_queue_declare(c.conn(), 1, q, 0, 1, 0, 0, amqp_empty_table);
  if (!c.Ok("queue.declare")) return absl::InternalError(c.error());
  amqp_queue_bind(c.conn(), 1, q, amqp_cstring_bytes(exchange.c_str()),
                  amqp_cstring_bytes(routing_key.c_str()), amqp_empty_table);
  if (!c.Ok("queue.bind")) return absl::InternalError(c.error());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> TakeAll(const std::string& url,
                                                 const std::string& queue) {
  Client c(url);
  if (!c.open()) return absl::UnavailableError(c.error());
  std::vector<std::string> bodies;
  while (true) {
    amqp_rpc_reply_t r = amqp_basic_get(c.conn(), 1, amqp_cstring_bytes(queue.c_str()), 1);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) return absl::InternalError("basic.get failed");
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) return bodies;
    amqp_message_t m;
    if (amqp_read_message(c.conn(), 1, &m, 0).reply_type != AMQP_RESPONSE_NORMAL) {
      return absl::InternalError("reading a basic.get message failed");
    }
    bodies.emplace_back(static_cast<const char*>(m.body.bytes), m.body.len);
    amqp_destroy_message(&m);
  }
}

absl::Status DeleteQueue(const std::string& url, const std::string& queue) {
  Client c(url);
  if (!c.open()) return absl::UnavailableError(c.error());
  amqp_queue_delete(c.conn(), 1, amqp_cstring_bytes(queue.c_str()), 0, 0);
  if (!c.Ok("queue.delete")) return absl::InternalError(c.error());
  return absl::OkStatus();
}

std::string PickupFile(const std::string& id, int domain) {
  return absl::StrCat("x-sender: <bounce@esp.example>\nx-receiver: <u-", id, "@dom-", domain,
                      ".example>\nx-job: cluster\nFrom: news@esp.example\nTo: u-", id, "@dom-",
                      domain, ".example\nMessage-ID: <", id,
                      "@cluster.test>\nSubject: scaling out\n\nhello from the broker\n");
}

std::map<std::string, int> ReceivedIds(const std::vector<std::string>& out_dirs) {
  std::map<std::string, int> ids;
  for (const std::string& dir : out_dirs) {
    for (const std::string& name : ListDir(dir)) {
      if (!absl::EndsWith(name, ".env")) continue;  // complete messages only
      const std::string eml = dir + "/" + name.substr(0, name.size() - 4) + ".eml";
      ++ids[MessageIdOf(ReadFileOrDie(eml))];
    }
  }
  return ids;
}

size_t CountReceived(const std::string& out_dir) {
  size_t n = 0;
  DIR* d = opendir(out_dir.c_str());
  if (d == nullptr) return 0;
  while (dirent* e = readdir(d)) n += absl::EndsWith(e->d_name, ".env") ? 1 : 0;
  closedir(d);
  return n;
}

}  // namespace mxb::testing
