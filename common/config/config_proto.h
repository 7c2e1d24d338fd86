// Conversion between the Config model and the protobuf RoutingTable that the control
// plane pushes to workers (proto/llmproxy/v1/config.proto).
#pragma once

#include <optional>
#include <string>

#include "common/config/config.h"
#include "llmproxy/v1/config.pb.h"

namespace llmproxy {

v1::RoutingTable ToProto(const Config& config);

struct FromProtoResult {
  std::optional<Config> config;
  std::string error;  // set when the table is invalid (the worker NACKs with it)
};
// Converts and validates (ValidateConfig); control_plane settings are not carried.
FromProtoResult FromProto(const v1::RoutingTable& table);

// A key's budget on the wire (config.proto KeyBudget, also used by the Admin API). Ranges
// are the validator's; BudgetFromProto gives nullopt and `error` (without a path) when
// neither usd nor tokens is set or the period is negative.
void BudgetToProto(const KeyBudget& budget, v1::KeyBudget* out);
std::optional<KeyBudget> BudgetFromProto(const v1::KeyBudget& budget, std::string& error);

// A copy safe to show: api keys, auth keys and header values replaced by "<redacted>".
v1::RoutingTable Redacted(const v1::RoutingTable& table);

}  // namespace llmproxy
