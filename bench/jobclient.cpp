// End-to-end job benchmark client: N concurrent clients on one epoll thread, each with its own
// keep-alive connection, each submitting a job (POST /job) and polling GET /job/{id} until the job
// is COMPLETED (or FAILED), then starting the next. Written in C++ rather than Python so that, on a
// small machine, the client takes little of the CPU the server needs (it reports its own CPU use).
//
//   jobclient loop  --port P --clients N --seconds S [--model echo] [--prompt TEXT] [--params JSON]
//                   [--poll-min-ms 1] [--poll-max-ms 16] [--wait SECONDS]
//       Closed loop for S seconds. With --wait, each POST is /job?wait=SECONDS: the answer is the
//       ended job (200), no polls (a 202, when the wait ran out, falls back to polling). Latency of a job = POST sent
//       -> COMPLETED seen. Polls back off from poll-min to poll-max (doubling), so the latency is quantised by up to
//       one poll delay; the server's own view (the job's created_at -> finished_at) is reported beside it.
//   With --file PATH, each POST is multipart/form-data instead: the model, the params when given, and
//   the file's bytes as the form field --file-field (default image), as an HTTP client uploads a file job.
//   jobclient batch --port P --clients N --jobs M [...]
//       Submits M jobs over N connections as fast as 202s come back, then polls GET /models until
//       the model has nothing queued or running: jobs/s = M / (first POST -> queue drained).
//
// Prints one line `RESULT key=value ...` (parsed by bench/run.sh) and a readable summary to stderr.
// Build (bench/run.sh does this): g++ -std=c++23 -O2 -o .bench/jobclient bench/jobclient.cpp
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <format>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <print>
#include <queue>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
double msSince(Clock::time_point a, Clock::time_point b = Clock::now()) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

[[noreturn]] void die(const std::string& msg) {
  std::println(stderr, "jobclient: {}", msg);
  std::exit(1);
}

struct Options {
  std::string mode;
  int port = 0;
  int clients = 1;
  double seconds = 10;
  long jobs = 0;
  std::string model = "echo";
  std::string prompt = "hello from jobclient";
  std::string params = "{}";
  double poll_min_ms = 1;
  double poll_max_ms = 16;
  std::string wait;  // POST /job?wait=<this> when set
  std::string file;  // multipart upload of this file when set
  std::string file_field = "image";
};

Options parseArgs(int argc, char** argv) {
  Options o;
  if (argc < 2) die("usage: jobclient loop|batch --port P --clients N (--seconds S | --jobs M) ...");
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    if (i + 1 >= argc) die(std::format("{} needs a value", a));
    const char* v = argv[++i];
    if (a == "--port") o.port = std::atoi(v);
    else if (a == "--clients") o.clients = std::atoi(v);
    else if (a == "--seconds") o.seconds = std::atof(v);
    else if (a == "--jobs") o.jobs = std::atol(v);
    else if (a == "--model") o.model = v;
    else if (a == "--prompt") o.prompt = v;
    else if (a == "--params") o.params = v;
    else if (a == "--poll-min-ms") o.poll_min_ms = std::atof(v);
    else if (a == "--poll-max-ms") o.poll_max_ms = std::atof(v);
    else if (a == "--wait")
      o.wait = v;
    else if (a == "--file")
      o.file = v;
    else if (a == "--file-field")
      o.file_field = v;
    else die(std::format("unknown option {}", a));
  }
  if (o.mode != "loop" && o.mode != "batch") die("mode must be loop or batch");
  if (o.port <= 0 || o.clients < 1) die("--port and --clients are required");
  if (o.mode == "batch" && o.jobs < 1) die("batch needs --jobs");
  return o;
}

std::string jsonEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// One HTTP/1.1 keep-alive connection with at most one request in flight.
struct Conn {
  int fd = -1;
  std::string out;  // unsent bytes
  std::string in;   // received, not yet consumed
  // What this client is doing.
  enum class State { kIdle, kSubmitting, kWaitingToPoll, kPolling, kDone } state = State::kIdle;
  long job_id = 0;
  Clock::time_point job_start;
  double poll_delay_ms = 0;
  int polls = 0;
};

int connectTo(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die(std::format("socket: {}", std::strerror(errno)));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 && errno != EINPROGRESS)
    die(std::format("connect: {}", std::strerror(errno)));
  return fd;
}

// A complete response at the front of `buf`: status and body; nullopt while incomplete.
struct Response {
  int status;
  std::string body;
};
std::optional<Response> takeResponse(std::string& buf) {
  size_t end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return std::nullopt;
  if (buf.size() < 12 || buf.compare(0, 5, "HTTP/") != 0) die("bad response start: " + buf.substr(0, 40));
  int status = std::atoi(buf.c_str() + 9);
  size_t length = std::string::npos;
  for (size_t p = buf.find("\r\n") + 2; p < end;) {
    size_t eol = buf.find("\r\n", p);
    std::string_view line(buf.data() + p, eol - p);
    if (line.size() > 15 && strncasecmp(line.data(), "content-length:", 15) == 0)
      length = std::strtoul(line.data() + 15, nullptr, 10);
    p = eol + 2;
  }
  if (length == std::string::npos) die("response without Content-Length");
  if (buf.size() < end + 4 + length) return std::nullopt;
  Response r{status, buf.substr(end + 4, length)};
  buf.erase(0, end + 4 + length);
  return r;
}

// The value after `"key":` in a flat JSON object (numbers and plain strings only).
std::string jsonField(std::string_view body, std::string_view key) {
  std::string pat = std::format("\"{}\":", key);
  size_t p = body.find(pat);
  if (p == std::string_view::npos) return {};
  p += pat.size();
  if (p < body.size() && body[p] == '"') {
    size_t e = body.find('"', p + 1);
    return std::string(body.substr(p + 1, e - p - 1));
  }
  size_t e = body.find_first_of(",}", p);
  return std::string(body.substr(p, e - p));
}

// "2026-11-25T02:52:58.829359Z" -> microseconds since the epoch (0 when it does not parse).
long long isoMicros(const std::string& t) {
  std::tm tm{};
  long micros = 0;
  char frac[16] = {};
  if (std::sscanf(t.c_str(), "%d-%d-%dT%d:%d:%d.%15[0-9]", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, frac) < 6)
    return 0;
  std::string f = std::string(frac).substr(0, 6);
  f.resize(6, '0');
  micros = std::atol(f.c_str());
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<long long>(timegm(&tm)) * 1000000 + micros;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

double cpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    std::string body = std::format(R"({{"model":"{}","prompt":"{}","params":{}}})", jsonEscape(o_.model),
                                   jsonEscape(o_.prompt), o_.params);
    std::string type = "application/json";
    if (!o_.file.empty()) {
      std::ifstream in(o_.file, std::ios::binary);
      if (!in) die(std::format("cannot read {}", o_.file));
      std::string bytes((std::istreambuf_iterator<char>(in)), {});
      const std::string b = "jobclient-4f9a1c";
      auto field = [&](std::string_view name, std::string_view value) {
        return std::format("--{}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{}\r\n", b, name, value);
      };
      std::string name = std::filesystem::path(o_.file).filename().string();
      body = field("model", o_.model) + (o_.params == "{}" ? "" : field("params", o_.params)) +
             std::format(
                 "--{}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n",
                 b, o_.file_field, name) +
             bytes + std::format("\r\n--{}--\r\n", b);
      type = "multipart/form-data; boundary=" + b;
    }
    std::string target = o_.wait.empty() ? "/job" : std::format("/job?wait={}", o_.wait);
    post_ = std::format("POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{}",
                        target, type, body.size(), body);
    conns_.resize(static_cast<size_t>(o_.clients));
    for (size_t i = 0; i < conns_.size(); ++i) {
      conns_[i].fd = connectTo(o_.port);
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
      ev.data.u64 = i;
      epoll_ctl(epfd_, EPOLL_CTL_ADD, conns_[i].fd, &ev);
    }
    active_ = o_.clients;
  }

  int run() {
    start_ = Clock::now();
    cpu0_ = cpuSeconds();
    deadline_ = start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.seconds));
    for (size_t i = 0; i < conns_.size(); ++i) nextJob(i);
    std::vector<epoll_event> events(conns_.size() + 1);
    while (active_ > 0 || (o_.mode == "batch" && !drained_)) {
      int timeout = -1;
      if (!timers_.empty()) timeout = std::max(0, static_cast<int>(std::ceil(-msSince(timers_.top().first))));
      int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), timeout);
      if (n < 0 && errno != EINTR) die(std::format("epoll_wait: {}", std::strerror(errno)));
      for (int k = 0; k < n; ++k) {
        size_t i = events[static_cast<size_t>(k)].data.u64;
        if (events[static_cast<size_t>(k)].events & (EPOLLERR | EPOLLHUP)) die("connection closed by the server");
        flush(i);
        readAll(i);
      }
      while (!timers_.empty() && timers_.top().first <= Clock::now()) {
        size_t i = timers_.top().second;
        timers_.pop();
        if (i == kDrainTimer) checkDrained();
        else sendPoll(i);
      }
    }
    report();
    return errors_ > 0 ? 1 : 0;
  }

 private:
  static constexpr size_t kDrainTimer = static_cast<size_t>(-1);

  void send(size_t i, std::string req) {
    conns_[i].out += req;
    flush(i);
  }
  void flush(size_t i) {
    Conn& c = conns_[i];
    while (!c.out.empty()) {
      ssize_t w = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ENOTCONN) return;
        die(std::format("send: {}", std::strerror(errno)));
      }
      c.out.erase(0, static_cast<size_t>(w));
    }
  }
  void readAll(size_t i) {
    Conn& c = conns_[i];
    char buf[16384];
    while (true) {
      ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
      if (r > 0) {
        c.in.append(buf, static_cast<size_t>(r));
        continue;
      }
      if (r == 0) die("connection closed by the server");
      if (errno == EAGAIN || errno == EINTR) break;
      die(std::format("recv: {}", std::strerror(errno)));
    }
    while (auto resp = takeResponse(c.in)) onResponse(i, *resp);
  }

  void nextJob(size_t i) {
    Conn& c = conns_[i];
    bool more = o_.mode == "loop" ? Clock::now() < deadline_ : submitted_ < o_.jobs;
    if (!more) {
      if (c.state != Conn::State::kDone) {
        c.state = Conn::State::kDone;
        if (--active_ == 0 && o_.mode == "batch") {
          submit_done_ = Clock::now();
          checkDrained();
        }
      }
      return;
    }
    ++submitted_;
    c.state = Conn::State::kSubmitting;
    c.job_start = Clock::now();
    c.polls = 0;
    send(i, post_);
  }

  void sendPoll(size_t i) {
    Conn& c = conns_[i];
    c.state = Conn::State::kPolling;
    ++c.polls;
    ++gets_;
    send(i, std::format("GET /job/{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", c.job_id));
  }

  void schedule(size_t i, double delay_ms) {
    auto at = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(delay_ms));
    timers_.emplace(at, i);
  }

  void onResponse(size_t i, const Response& r) {
    if (i == drain_conn_ && drain_pending_) return onDrainResponse(r);
    Conn& c = conns_[i];
    if (c.state == Conn::State::kSubmitting) {
      submit_ms_.push_back(msSince(c.job_start));
      if (r.status == 200 && !o_.wait.empty() && o_.mode == "loop") {  // waited: the ended job
        ++accepted_;
        c.job_id = std::atol(jsonField(r.body, "id").c_str());
        c.state = Conn::State::kPolling;
        return onResponse(i, r);
      }
      if (r.status != 202) {
        ++errors_;
        if (errors_ <= 3) std::println(stderr, "jobclient: POST /job -> {}: {}", r.status, r.body.substr(0, 200));
        return nextJob(i);
      }
      ++accepted_;
      c.job_id = std::atol(jsonField(r.body, "id").c_str());
      if (o_.mode == "batch") return nextJob(i);
      c.state = Conn::State::kWaitingToPoll;
      c.poll_delay_ms = o_.poll_min_ms;
      return schedule(i, c.poll_delay_ms);
    }
    if (c.state == Conn::State::kPolling) {
      std::string status = jsonField(r.body, "status");
      if (r.status != 200 || status == "FAILED" || status == "CANCELLED") {
        ++errors_;
        if (errors_ <= 3) std::println(stderr, "jobclient: GET /job/{} -> {} {}", c.job_id, r.status, r.body.substr(0, 200));
        return nextJob(i);
      }
      if (status == "COMPLETED") {
        latency_ms_.push_back(msSince(c.job_start));
        long long created = isoMicros(jsonField(r.body, "created_at"));
        long long finished = isoMicros(jsonField(r.body, "finished_at"));
        if (created > 0 && finished >= created) server_ms_.push_back(static_cast<double>(finished - created) / 1000.0);
        polls_per_job_ += c.polls;
        last_completion_ = Clock::now();
        return nextJob(i);
      }
      c.state = Conn::State::kWaitingToPoll;
      c.poll_delay_ms = std::min(o_.poll_max_ms, c.poll_delay_ms * 2);
      return schedule(i, c.poll_delay_ms);
    }
    die("response with no request in flight");
  }

  // batch mode: poll GET /models on connection 0 until the model's queue is empty.
  void checkDrained() {
    drain_conn_ = 0;
    drain_pending_ = true;
    send(0, "GET /models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  }
  void onDrainResponse(const Response& r) {
    drain_pending_ = false;
    size_t p = r.body.find(std::format("\"id\":\"{}\"", o_.model));
    if (r.status != 200 || p == std::string::npos) die("GET /models did not list the model");
    size_t e = r.body.find('}', p);
    std::string_view m(r.body.data() + p, e - p);
    if (jsonField(m, "queued") == "0" && jsonField(m, "running") == "0") {
      drained_ = true;
      last_completion_ = Clock::now();
      return;
    }
    timers_.emplace(Clock::now() + std::chrono::milliseconds(2), kDrainTimer);
  }

  void report() {
    double wall_s = msSince(start_) / 1000.0;
    double cpu = cpuSeconds() - cpu0_;
    if (o_.mode == "loop") {
      size_t n = latency_ms_.size();
      double jobs_s = static_cast<double>(n) / (msSince(start_, last_completion_) / 1000.0);
      std::println("RESULT mode=loop clients={} jobs={} seconds={:.3f} jobs_per_s={:.1f} p50_ms={:.3f} p90_ms={:.3f} p99_ms={:.3f} "
                   "server_p50_ms={:.3f} server_p99_ms={:.3f} submit_p50_ms={:.3f} submit_p99_ms={:.3f} gets_per_job={:.2f} "
                   "errors={} client_cpu_pct={:.1f}",
                   o_.clients, n, wall_s, jobs_s, percentile(latency_ms_, 50), percentile(latency_ms_, 90),
                   percentile(latency_ms_, 99),
                   percentile(server_ms_, 50), percentile(server_ms_, 99),
                   percentile(submit_ms_, 50), percentile(submit_ms_, 99),
                   n ? static_cast<double>(polls_per_job_) / static_cast<double>(n) : 0.0, errors_, 100.0 * cpu / wall_s);
    } else {
      double total_s = msSince(start_, last_completion_) / 1000.0;
      double submit_s = msSince(start_, submit_done_) / 1000.0;
      std::println("RESULT mode=batch clients={} jobs={} seconds={:.3f} jobs_per_s={:.1f} submit_per_s={:.1f} "
                   "submit_seconds={:.3f} submit_p50_ms={:.3f} submit_p99_ms={:.3f} errors={} client_cpu_pct={:.1f}",
                   o_.clients, accepted_, total_s, static_cast<double>(accepted_) / total_s,
                   static_cast<double>(accepted_) / submit_s, submit_s, percentile(submit_ms_, 50), percentile(submit_ms_, 99),
                   errors_, 100.0 * cpu / wall_s);
    }
  }

  Options o_;
  int epfd_ = -1;
  std::string post_;
  std::vector<Conn> conns_;
  int active_ = 0;
  long submitted_ = 0, accepted_ = 0, errors_ = 0, gets_ = 0, polls_per_job_ = 0;
  std::vector<double> latency_ms_, submit_ms_, server_ms_;  // server_ms_: created_at -> finished_at
  Clock::time_point start_, deadline_, submit_done_, last_completion_;
  double cpu0_ = 0;
  size_t drain_conn_ = 0;
  bool drain_pending_ = false, drained_ = false;
  using Timer = std::pair<Clock::time_point, size_t>;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
};

}  // namespace

int main(int argc, char** argv) {
  Bench bench(parseArgs(argc, argv));
  return bench.run();
}
