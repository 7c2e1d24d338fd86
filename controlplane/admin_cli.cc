#include "controlplane/admin_cli.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <tuple>

#include "common/config/config_loader.h"     // ParseDuration
#include "common/config/config_validator.h"  // the bounds of key limits
#include "llmproxy/v1/admin.grpc.pb.h"

namespace llmproxy {
namespace {

using nlohmann::json;

struct AdminArgs {
  std::string addr;
  std::string token;
  bool json = false;
  std::vector<std::string> models;  // keys create --models a,b
  KeyLimitFlags limits;             // keys create --rpm N ...
  std::string key;                  // usage --key K
  std::string since;                // usage --since 7d
  std::vector<std::string> words;
};

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string Timestamp(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "";
  return google::protobuf::util::TimeUtil::ToString(ts);
}

// Prints rows as left-aligned columns.
void PrintTable(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return;
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], r[i].size());
    }
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(widths[i] - r[i].size() + 2, ' ');
    }
    out << line << "\n";
  }
}

std::string Fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

json BackendHealthJson(const v1::BackendHealth& h) {
  return {{"name", h.name()},
          {"up", h.up()},
          {"outstanding", h.outstanding()},
          {"ewma_latency_seconds", h.ewma_latency_seconds()},
          {"consecutive_failures", h.consecutive_failures()}};
}

// The flag `w` (as "--rpm" or "--rpm=N") names among the limit flags; null when none.
std::optional<std::string>* LimitFlag(const std::string& w, KeyLimitFlags& flags) {
  for (const auto& [name, field] : {std::pair{"--rpm", &flags.rpm}, std::pair{"--tpm", &flags.tpm},
                                    std::pair{"--max-parallel", &flags.max_parallel},
                                    std::pair{"--budget-usd", &flags.budget_usd},
                                    std::pair{"--budget-tokens", &flags.budget_tokens},
                                    std::pair{"--budget-period", &flags.budget_period}}) {
    const std::string_view n(name);
    if (w == n || (w.size() > n.size() && w.compare(0, n.size(), n) == 0 && w[n.size()] == '=')) {
      return field;
    }
  }
  return nullptr;
}

int Fail(std::ostream& err, const grpc::Status& s) {
  err << "error: " << s.error_code() << ": " << s.error_message() << "\n";
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    err << "(is llmproxy-ctl running and listening there? see --addr)\n";
  }
  return 1;
}

void SetUp(grpc::ClientContext& ctx, const AdminArgs& a) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!a.token.empty()) ctx.AddMetadata("authorization", "Bearer " + a.token);
}

int Workers(v1::Admin::Stub& stub, const AdminArgs& a, std::ostream& out, std::ostream& err) {
  grpc::ClientContext ctx;
  SetUp(ctx, a);
  v1::ListWorkersResponse resp;
  grpc::Status s = stub.ListWorkers(&ctx, v1::ListWorkersRequest(), &resp);
  if (!s.ok()) return Fail(err, s);
  if (a.json) {
    json workers = json::array();
    for (const auto& w : resp.workers()) {
      json backends = json::array();
      for (const auto& h : w.backends()) backends.push_back(BackendHealthJson(h));
      workers.push_back({{"id", w.id()},
                         {"pid", w.pid()},
                         {"address", w.address()},
                         {"connected", w.connected()},
                         {"healthy", w.healthy()},
                         {"state", w.state()},
                         {"last_report_age_ms", w.last_report_age_ms()},
                         {"report_interval_ms", w.report_interval_ms()},
                         {"acked_version", w.acked_version()},
                         {"nacked_version", w.nacked_version()},
                         {"last_nack_error", w.last_nack_error()},
                         {"in_flight", w.in_flight()},
                         {"metrics_port", w.metrics_port()},
                         {"connected_since", Timestamp(w.connected_since())},
                         {"backends", backends}});
    }
    out << json{{"current_version", resp.current_version()}, {"workers", workers}}.dump(2) << "\n";
    return 0;
  }
  out << "current version: " << resp.current_version() << "\n";
  std::vector<std::vector<std::string>> rows = {{"ID", "PID", "ADDRESS", "CONNECTED", "STATE",
                                                 "ACKED", "NACKED", "IN_FLIGHT", "METRICS",
                                                 "SINCE"}};
  for (const auto& w : resp.workers()) {
    rows.push_back({w.id(), std::to_string(w.pid()), w.address(), w.connected() ? "yes" : "no",
                    w.state().empty() ? "-" : w.state(), std::to_string(w.acked_version()),
                    w.nacked_version() ? std::to_string(w.nacked_version()) : "-",
                    std::to_string(w.in_flight()), std::to_string(w.metrics_port()),
                    Timestamp(w.connected_since())});
  }
  PrintTable(out, rows);
  for (const auto& w : resp.workers()) {
    if (!w.last_nack_error().empty()) {
      out << w.id() << " refused version " << w.nacked_version() << ": " << w.last_nack_error()
          << "\n";
    }
    if (w.state() == "stale") {
      out << w.id() << " is stale: no load report for " << w.last_report_age_ms()
          << " ms (reports every " << w.report_interval_ms() << " ms)\n";
    }
  }
  return 0;
}

int Backends(v1::Admin::Stub& stub, const AdminArgs& a, std::ostream& out, std::ostream& err) {
  grpc::ClientContext ctx;
  SetUp(ctx, a);
  v1::ListBackendsResponse resp;
  grpc::Status s = stub.ListBackends(&ctx, v1::ListBackendsRequest(), &resp);
  if (!s.ok()) return Fail(err, s);
  if (a.json) {
    json backends = json::array();
    for (const auto& b : resp.backends()) {
      backends.push_back(
          {{"name", b.name()},
           {"url", b.url()},
           {"weight", b.weight()},
           {"configured_weight", b.configured_weight()},
           {"drained", b.drained()},
           {"models", std::vector<std::string>(b.models().begin(), b.models().end())},
           {"default_model", b.default_model()},
           {"workers_up", b.workers_up()},
           {"workers_reporting", b.workers_reporting()},
           {"outstanding", b.outstanding()},
           {"ewma_latency_seconds", b.ewma_latency_seconds()}});
    }
    out << json{{"version", resp.version()}, {"backends", backends}}.dump(2) << "\n";
    return 0;
  }
  out << "config version: " << resp.version() << "\n";
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "URL", "WEIGHT", "STATE", "UP", "OUTSTANDING", "EWMA_MS", "MODELS"}};
  for (const auto& b : resp.backends()) {
    std::string weight = std::to_string(b.weight());
    if (b.weight() != b.configured_weight()) {
      weight += " (file " + std::to_string(b.configured_weight()) + ")";
    }
    std::string models;
    for (const auto& m : b.models()) models += (models.empty() ? "" : ",") + m;
    rows.push_back({b.name(), b.url(), weight, b.drained() ? "drained" : "active",
                    std::to_string(b.workers_up()) + "/" + std::to_string(b.workers_reporting()),
                    std::to_string(b.outstanding()), Fixed(b.ewma_latency_seconds() * 1000, 1),
                    models});
  }
  PrintTable(out, rows);
  return 0;
}

int ConfigCmd(v1::Admin::Stub& stub, const AdminArgs& a, std::ostream& out, std::ostream& err) {
  grpc::ClientContext ctx;
  SetUp(ctx, a);
  v1::GetConfigResponse resp;
  grpc::Status s = stub.GetConfig(&ctx, v1::GetConfigRequest(), &resp);
  if (!s.ok()) return Fail(err, s);
  std::string table_json;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.add_whitespace = false;
  (void)google::protobuf::util::MessageToJsonString(resp.table(), &table_json, opts);
  json table = json::parse(table_json, nullptr, false);
  if (a.json) {
    out << json{{"version", resp.version()},
                {"path", resp.path()},
                {"reloads_ok", resp.reloads_ok()},
                {"reloads_rejected", resp.reloads_rejected()},
                {"last_errors",
                 std::vector<std::string>(resp.last_errors().begin(), resp.last_errors().end())},
                {"table", table}}
               .dump(2)
        << "\n";
    return 0;
  }
  out << "version: " << resp.version() << "\n"
      << "path: " << resp.path() << "\n"
      << "reloads: " << resp.reloads_ok() << " ok, " << resp.reloads_rejected() << " rejected\n";
  if (resp.last_errors_size() > 0) {
    out << "last rejected edit:\n";
    for (const auto& e : resp.last_errors()) out << "  " << e << "\n";
  }
  out << "table (keys redacted):\n" << table.dump(2) << "\n";
  return 0;
}

int ReloadCmd(v1::Admin::Stub& stub, const AdminArgs& a, std::ostream& out, std::ostream& err) {
  grpc::ClientContext ctx;
  SetUp(ctx, a);
  v1::ReloadResponse resp;
  grpc::Status s = stub.Reload(&ctx, v1::ReloadRequest(), &resp);
  if (!s.ok()) return Fail(err, s);
  if (a.json) {
    out << json{{"ok", resp.ok()},
                {"version", resp.version()},
                {"errors", std::vector<std::string>(resp.errors().begin(), resp.errors().end())}}
               .dump(2)
        << "\n";
  } else if (resp.ok()) {
    out << "reloaded: version " << resp.version() << "\n";
  } else {
    out << "rejected; version " << resp.version() << " stays in force:\n";
    for (const auto& e : resp.errors()) out << "  " << e << "\n";
  }
  return resp.ok() ? 0 : 1;
}

int SetState(v1::Admin::Stub& stub, const AdminArgs& a, v1::SetBackendStateRequest req,
             std::ostream& out, std::ostream& err) {
  grpc::ClientContext ctx;
  SetUp(ctx, a);
  v1::SetBackendStateResponse resp;
  grpc::Status s = stub.SetBackendState(&ctx, req, &resp);
  if (!s.ok()) return Fail(err, s);
  if (a.json) {
    out << json{{"ok", true}, {"version", resp.version()}}.dump(2) << "\n";
  } else {
    out << "ok: version " << resp.version() << "\n";
  }
  return 0;
}

std::string IsoTime(const google::protobuf::Timestamp& t) {
  const std::time_t secs = static_cast<std::time_t>(t.seconds());
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A budget period as people write it: "30d", "36h", "90m", else FormatDuration's.
std::string Period(const google::protobuf::Duration& d) {
  const int64_t ms = d.seconds() * 1000 + d.nanos() / 1'000'000;
  for (const auto& [unit, size] :
       {std::pair{"d", int64_t{86'400'000}}, std::pair{"h", int64_t{3'600'000}},
        std::pair{"m", int64_t{60'000}}}) {
    if (ms > 0 && ms % size == 0) return std::to_string(ms / size) + unit;
  }
  return FormatDuration(Millis(ms));
}

// USD without trailing zeros: 12.5, 0.001, 1000000000.
std::string Usd(double v) {
  std::string s = Fixed(v, 6);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// "rpm 600, tpm 90000, parallel 4, $12.5/30d" or "-".
std::string LimitsText(const v1::KeyInfo& k) {
  std::string out;
  auto add = [&out](const std::string& part) { out += (out.empty() ? "" : ", ") + part; };
  if (k.rpm() != 0) add("rpm " + std::to_string(k.rpm()));
  if (k.tpm() != 0) add("tpm " + std::to_string(k.tpm()));
  if (k.max_parallel() != 0) add("parallel " + std::to_string(k.max_parallel()));
  if (k.has_budget()) {
    const v1::KeyBudget& b = k.budget();
    add((b.has_usd() ? "$" + Usd(b.usd()) : std::to_string(b.tokens()) + " tokens") + "/" +
        Period(b.period()));
  }
  return out.empty() ? "-" : out;
}

json LimitJson(uint64_t v) { return v == 0 ? json(nullptr) : json(v); }

json BudgetJson(const v1::KeyInfo& k) {
  if (!k.has_budget()) return nullptr;
  const v1::KeyBudget& b = k.budget();
  json out = b.has_usd() ? json{{"usd", b.usd()}} : json{{"tokens", b.tokens()}};
  out["period"] = Period(b.period());
  out["period_seconds"] = b.period().seconds();
  return out;
}

std::string Joined(const google::protobuf::RepeatedPtrField<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

int KeysCmd(v1::Admin::Stub& stub, const AdminArgs& a, std::ostream& out, std::ostream& err) {
  const std::string& sub = a.words[1];
  grpc::ClientContext ctx;
  SetUp(ctx, a);
  if (sub == "create" || sub == "rotate") {
    v1::CreateKeyResponse resp;
    grpc::Status s;
    if (sub == "create") {
      v1::CreateKeyRequest req;
      req.set_name(a.words[2]);
      for (const std::string& m : a.models) req.add_models(m);
      // Checked before any call (RunAdminCli): cannot fail here.
      (void)ApplyKeyLimitFlags(a.limits, req);
      s = stub.CreateKey(&ctx, req, &resp);
    } else {
      v1::RotateKeyRequest req;
      req.set_name(a.words[2]);
      s = stub.RotateKey(&ctx, req, &resp);
    }
    if (!s.ok()) return Fail(err, s);
    if (a.json) {
      out << json{{"name", resp.name()}, {"key", resp.key()}, {"version", resp.version()}}.dump(2)
          << "\n";
    } else {
      // The key on a line of its own, so `| tail -1` or `| head -1` can take it.
      out << resp.key() << "\n";
      err << (sub == "create" ? "created" : "rotated") << " key '" << resp.name() << "' (version "
          << resp.version() << "); it is shown this once and stored only as its SHA-256\n";
    }
    return 0;
  }
  if (sub == "revoke") {
    v1::RevokeKeyRequest req;
    req.set_name(a.words[2]);
    v1::RevokeKeyResponse resp;
    grpc::Status s = stub.RevokeKey(&ctx, req, &resp);
    if (!s.ok()) return Fail(err, s);
    if (a.json) {
      out << json{{"ok", true}, {"version", resp.version()}}.dump(2) << "\n";
    } else {
      out << "revoked '" << req.name() << "': version " << resp.version() << "\n";
    }
    return 0;
  }
  v1::ListKeysResponse resp;
  grpc::Status s = stub.ListKeys(&ctx, v1::ListKeysRequest(), &resp);
  if (!s.ok()) return Fail(err, s);
  if (a.json) {
    json keys = json::array();
    for (const v1::KeyInfo& k : resp.keys()) {
      keys.push_back(
          {{"name", k.name()},
           {"source", k.source()},
           {"models", std::vector<std::string>(k.models().begin(), k.models().end())},
           {"created_at", k.has_created_at() ? json(IsoTime(k.created_at())) : json(nullptr)},
           {"revoked_at", k.has_revoked_at() ? json(IsoTime(k.revoked_at())) : json(nullptr)},
           {"sha256_prefix", k.sha256_prefix()},
           {"rpm", LimitJson(k.rpm())},
           {"tpm", LimitJson(k.tpm())},
           {"max_parallel", LimitJson(k.max_parallel())},
           {"budget", BudgetJson(k)}});
    }
    out << json{{"keys", keys}}.dump(2) << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "SOURCE", "STATE", "MODELS", "LIMITS", "CREATED", "SHA256"}};
  for (const v1::KeyInfo& k : resp.keys()) {
    rows.push_back({k.name(), k.source(),
                    k.has_revoked_at() ? "revoked " + IsoTime(k.revoked_at()) : "active",
                    k.models_size() > 0 ? Joined(k.models()) : "(any)", LimitsText(k),
                    k.has_created_at() ? IsoTime(k.created_at()) : "-", k.sha256_prefix() + "..."});
  }
  PrintTable(out, rows);
  return 0;
}

int UsageCmd(v1::Admin::Stub& stub, const AdminArgs& a, std::ostream& out, std::ostream& err) {
  v1::UsageRequest req;
  req.set_key(a.key);
  // A duration as the config spells them (ParseDuration: 90m, 36h, 168h); 30 days by default.
  const std::optional<Millis> back = ParseDuration(a.since.empty() ? "720h" : a.since);
  if (!back) {
    err << "--since takes a duration (90m, 36h, 168h), got \"" << a.since << "\"\n";
    return 2;
  }
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  req.mutable_since()->set_seconds(now -
                                   std::chrono::duration_cast<std::chrono::seconds>(*back).count());
  grpc::ClientContext ctx;
  SetUp(ctx, a);
  v1::UsageResponse resp;
  grpc::Status s = stub.Usage(&ctx, req, &resp);
  if (!s.ok()) return Fail(err, s);
  // Summed over the period per key and model (the hours and backends are in --json).
  struct Sum {
    uint64_t requests = 0, prompt = 0, cached = 0, completion = 0;
    double cost = 0;
  };
  std::map<std::pair<std::string, std::string>, Sum> sums;
  json rows = json::array();
  for (const v1::UsageRow& r : resp.rows()) {
    Sum& sum = sums[{r.key(), r.model()}];
    sum.requests += r.requests();
    sum.prompt += r.prompt_tokens();
    sum.cached += r.cached_prompt_tokens();
    sum.completion += r.completion_tokens();
    sum.cost += r.cost_usd();
    rows.push_back({{"hour", IsoTime(r.hour())},
                    {"key", r.key()},
                    {"model", r.model()},
                    {"backend", r.backend()},
                    {"requests", r.requests()},
                    {"prompt_tokens", r.prompt_tokens()},
                    {"cached_prompt_tokens", r.cached_prompt_tokens()},
                    {"completion_tokens", r.completion_tokens()},
                    {"cost_usd", r.cost_usd()}});
  }
  if (a.json) {
    json totals = json::array();
    for (const auto& [id, sum] : sums) {
      totals.push_back({{"key", id.first},
                        {"model", id.second},
                        {"requests", sum.requests},
                        {"prompt_tokens", sum.prompt},
                        {"cached_prompt_tokens", sum.cached},
                        {"completion_tokens", sum.completion},
                        {"cost_usd", sum.cost}});
    }
    out << json{{"since", IsoTime(req.since())}, {"totals", totals}, {"rows", rows}}.dump(2)
        << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> table = {
      {"KEY", "MODEL", "REQUESTS", "PROMPT", "CACHED", "COMPLETION", "COST USD"}};
  for (const auto& [id, sum] : sums) {
    std::ostringstream cost;
    cost << std::fixed << std::setprecision(6) << sum.cost;
    table.push_back({id.first, id.second, std::to_string(sum.requests), std::to_string(sum.prompt),
                     std::to_string(sum.cached), std::to_string(sum.completion), cost.str()});
  }
  out << "since " << IsoTime(req.since()) << "\n";
  PrintTable(out, table);
  return 0;
}

}  // namespace

void PrintAdminUsage(std::ostream& out) {
  out << "usage: llmproxy-ctl admin [--addr HOST:PORT] [--token T] [--json] COMMAND\n"
         "\n"
         "commands:\n"
         "  workers         workers: id, pid, state (healthy|stale), acked version, load\n"
         "  backends        backends with overrides and health aggregated over workers\n"
         "  config          the config in force (keys redacted), reload counts, last errors\n"
         "  reload          re-read the config file now\n"
         "  drain B         stop sending new traffic to backend B\n"
         "  enable B        undo a drain\n"
         "  weight B W      override backend B's weight (W = the file's weight clears it)\n"
         "  keys list       client keys: the file's and the stored ones (name, state, models,\n"
         "                  limits)\n"
         "  keys create NAME [--models M1,M2] [--rpm N] [--tpm N] [--max-parallel N]\n"
         "                  [--budget-usd X | --budget-tokens N] [--budget-period 30d]\n"
         "                  a new stored client key; prints the key once (stdout). Limits\n"
         "                  are held across all workers: requests and tokens (prompt +\n"
         "                  completion) per minute, requests in flight, and a budget over\n"
         "                  a period (default 30d); left out: no limit\n"
         "  keys rotate NAME  a new secret for a stored key (printed once); the old one stops\n"
         "  keys revoke NAME  stop accepting a stored key (within a second on every worker)\n"
         "  keys usage [NAME]  the same as usage [--key NAME]\n"
         "  usage [--key K] [--since 168h]\n"
         "                  requests, tokens (cached prompt tokens apart) and cost per key\n"
         "                  and model from the ledger\n"
         "                  (--since: a duration, default 720h; --json adds hours, backends)\n"
         "\n"
         "  --addr      control plane address (default $LLMPROXY_ADMIN_ADDR or "
         "127.0.0.1:50051)\n"
         "  --token     admin token for mutating commands (default $LLMPROXY_ADMIN_TOKEN)\n"
         "  --json      machine-readable output\n";
}

std::string ApplyKeyLimitFlags(const KeyLimitFlags& flags, v1::CreateKeyRequest& req) {
  // A whole number from 1 to `max`, digits only.
  auto whole = [](const std::string& text, uint64_t max) -> std::optional<uint64_t> {
    uint64_t v = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || v < 1 || v > max) {
      return std::nullopt;
    }
    return v;
  };
  const std::string rate = " takes a whole number from 1 to " + std::to_string(kMaxKeyRate) +
                           " (leave it out for no limit), got \"";
  for (const auto& [given, name, set] :
       {std::tuple{&flags.rpm, "--rpm", &v1::CreateKeyRequest::set_rpm},
        std::tuple{&flags.tpm, "--tpm", &v1::CreateKeyRequest::set_tpm},
        std::tuple{&flags.max_parallel, "--max-parallel",
                   &v1::CreateKeyRequest::set_max_parallel}}) {
    if (!*given) continue;
    const std::optional<uint64_t> v = whole(**given, kMaxKeyRate);
    if (!v) return name + rate + **given + "\"";
    (req.*set)(*v);
  }
  if (flags.budget_usd && flags.budget_tokens) {
    return "give --budget-usd or --budget-tokens, not both";
  }
  if (!flags.budget_usd && !flags.budget_tokens) {
    if (flags.budget_period) return "--budget-period goes with --budget-usd or --budget-tokens";
    return {};
  }
  v1::KeyBudget* budget = req.mutable_budget();
  if (flags.budget_usd) {
    const std::string& text = *flags.budget_usd;
    double usd = -1;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), usd);
    if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() ||
        !(usd > 0 && usd <= kMaxBudgetUsd)) {
      req.clear_budget();
      return "--budget-usd takes USD, more than 0 and at most 1000000000, got \"" + text + "\"";
    }
    budget->set_usd(usd);
  } else {
    const std::optional<uint64_t> tokens = whole(*flags.budget_tokens, kMaxBudgetTokens);
    if (!tokens) {
      req.clear_budget();
      return "--budget-tokens takes a whole number of tokens from 1 to " +
             std::to_string(kMaxBudgetTokens) + ", got \"" + *flags.budget_tokens + "\"";
    }
    budget->set_tokens(*tokens);
  }
  const std::string period_text = flags.budget_period.value_or("30d");
  const std::optional<Millis> period = ParseDuration(period_text);
  if (!period || period->count() <= 0 || *period > kMaxBudgetPeriod) {
    req.clear_budget();
    return "--budget-period takes a duration longer than 0 and at most 366d (e.g. 30d, 7d, "
           "24h), got \"" +
           period_text + "\"";
  }
  budget->mutable_period()->set_seconds(period->count() / 1000);
  budget->mutable_period()->set_nanos(static_cast<int32_t>(period->count() % 1000 * 1'000'000));
  return {};
}

int RunAdminCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  AdminArgs a;
  a.addr = Env("LLMPROXY_ADMIN_ADDR");
  if (a.addr.empty()) a.addr = "127.0.0.1:50051";
  a.token = Env("LLMPROXY_ADMIN_TOKEN");
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& w = args[i];
    auto value = [&](std::string& dst) {
      if (i + 1 >= args.size()) return false;
      dst = args[++i];
      return true;
    };
    if (w == "--addr") {
      if (!value(a.addr)) return err << "--addr needs a value\n", 2;
    } else if (w.rfind("--addr=", 0) == 0) {
      a.addr = w.substr(7);
    } else if (w == "--token") {
      if (!value(a.token)) return err << "--token needs a value\n", 2;
    } else if (w.rfind("--token=", 0) == 0) {
      a.token = w.substr(8);
    } else if (w == "--json") {
      a.json = true;
    } else if (w == "--key") {
      if (!value(a.key)) return err << "--key needs a value\n", 2;
    } else if (w == "--since") {
      if (!value(a.since)) return err << "--since needs a value\n", 2;
    } else if (w == "--models" || w.rfind("--models=", 0) == 0) {
      std::string list;
      if (w == "--models") {
        if (!value(list)) return err << "--models needs a value\n", 2;
      } else {
        list = w.substr(9);
      }
      for (size_t start = 0; start <= list.size();) {
        const size_t comma = std::min(list.find(',', start), list.size());
        if (comma > start) a.models.push_back(list.substr(start, comma - start));
        start = comma + 1;
      }
    } else if (auto* limit = LimitFlag(w, a.limits)) {
      const size_t eq = w.find('=');
      if (eq != std::string::npos) {
        *limit = w.substr(eq + 1);
      } else if (std::string v; value(v)) {
        *limit = std::move(v);
      } else {
        return err << w << " needs a value\n", 2;
      }
    } else if (w == "-h" || w == "--help") {
      PrintAdminUsage(out);
      return 0;
    } else if (w.size() > 1 && w[0] == '-') {
      err << "unknown admin flag: " << w << "\n";
      PrintAdminUsage(err);
      return 2;
    } else {
      a.words.push_back(w);
    }
  }
  if (a.words.empty()) {
    PrintAdminUsage(err);
    return 2;
  }
  const std::string& cmd = a.words[0];
  size_t want = (cmd == "drain" || cmd == "enable") ? 2 : cmd == "weight" ? 3 : 1;
  if (cmd == "keys") {
    const std::string sub = a.words.size() > 1 ? a.words[1] : "";
    want = sub == "list" ? 2 : (sub == "create" || sub == "revoke" || sub == "rotate") ? 3 : 0;
    if (sub == "usage") want = a.words.size() == 3 ? 3 : 2;  // keys usage [NAME]
  }
  bool known = cmd == "workers" || cmd == "backends" || cmd == "config" || cmd == "reload" ||
               cmd == "drain" || cmd == "enable" || cmd == "weight" || cmd == "keys" ||
               cmd == "usage";
  if (!known || a.words.size() != want) {
    err << (known ? "wrong number of arguments for " : "unknown admin command: ") << cmd << "\n";
    PrintAdminUsage(err);
    return 2;
  }
  if (a.limits.any()) {
    // Bad limits are usage errors, found before any call is made.
    if (cmd != "keys" || a.words[1] != "create") {
      err << "--rpm, --tpm, --max-parallel and --budget-* go only with keys create\n";
      return 2;
    }
    v1::CreateKeyRequest check;
    if (std::string e = ApplyKeyLimitFlags(a.limits, check); !e.empty()) {
      err << e << "\n";
      return 2;
    }
  }

  auto channel = grpc::CreateChannel(a.addr, grpc::InsecureChannelCredentials());
  auto stub = v1::Admin::NewStub(channel);
  if (cmd == "workers") return Workers(*stub, a, out, err);
  if (cmd == "backends") return Backends(*stub, a, out, err);
  if (cmd == "config") return ConfigCmd(*stub, a, out, err);
  if (cmd == "reload") return ReloadCmd(*stub, a, out, err);
  if (cmd == "keys" && a.words[1] == "usage") {
    // `keys usage [NAME]`: the usage command, for one key when named.
    AdminArgs one = a;
    if (a.words.size() == 3) one.key = a.words[2];
    return UsageCmd(*stub, one, out, err);
  }
  if (cmd == "keys") return KeysCmd(*stub, a, out, err);
  if (cmd == "usage") return UsageCmd(*stub, a, out, err);
  v1::SetBackendStateRequest req;
  req.set_backend(a.words[1]);
  if (cmd == "drain") {
    req.set_action(v1::SetBackendStateRequest::ACTION_DRAIN);
  } else if (cmd == "enable") {
    req.set_action(v1::SetBackendStateRequest::ACTION_ENABLE);
  } else {
    char* end = nullptr;
    unsigned long w = std::strtoul(a.words[2].c_str(), &end, 10);
    if (a.words[2].empty() || *end != '\0' || w > 1000000) {
      err << "weight must be a whole number, got \"" << a.words[2] << "\"\n";
      return 2;
    }
    req.set_action(v1::SetBackendStateRequest::ACTION_SET_WEIGHT);
    req.set_weight(static_cast<uint32_t>(w));
  }
  return SetState(*stub, a, req, out, err);
}

}  // namespace llmproxy
