// Reading model/stream from request bodies without a DOM, and byte-exact rewriting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dataplane/protocols/request_body.h"

namespace llmproxy {
namespace {

TEST(BodyPeek, ReadsTopLevelModelAndStream) {
  const BodyPeek peek = PeekRequestBody(
      R"({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true})");
  ASSERT_TRUE(peek.ok()) << peek.error;
  EXPECT_TRUE(peek.has_model);
  EXPECT_EQ(peek.model, "gpt-4o");
  EXPECT_TRUE(peek.stream);
  EXPECT_FALSE(peek.has_stream_options);
}

// The completion's cap, for a limited key's token reservation (docs/limits.md).
TEST(BodyPeek, ReadsTheLargestCompletionCap) {
  EXPECT_EQ(PeekRequestBody(R"({"model":"m","max_tokens":256})").max_output_tokens, 256u);
  EXPECT_EQ(PeekRequestBody(R"({"max_tokens":10,"max_completion_tokens":900})").max_output_tokens,
            900u);
  EXPECT_EQ(PeekRequestBody(R"({"input":"x","max_output_tokens":0})").max_output_tokens, 0u);
  EXPECT_FALSE(PeekRequestBody(R"({"model":"m"})").max_output_tokens);
  // Nested caps are not the request's.
  EXPECT_FALSE(PeekRequestBody(R"({"tools":[{"max_tokens":5}]})").max_output_tokens);
  // Another type is the upstream's to refuse: no cap, and still a valid body.
  for (const char* body : {R"({"max_tokens":-1})", R"({"max_tokens":1.5})", R"({"max_tokens":"9"})",
                           R"({"max_tokens":null})", R"({"max_tokens":[1]})",
                           R"({"max_tokens":99999999999999999999999})"}) {
    const BodyPeek peek = PeekRequestBody(body);
    EXPECT_TRUE(peek.ok()) << body << ": " << peek.error;
    EXPECT_FALSE(peek.max_output_tokens) << body;
  }
  // Malformed JSON inside the value still fails the body.
  EXPECT_FALSE(PeekRequestBody(R"({"max_tokens":[1,}})").ok());
}

TEST(BodyPeek, MissingModelAndStreamDefaults) {
  const BodyPeek peek = PeekRequestBody(R"({"messages":[]})");
  ASSERT_TRUE(peek.ok());
  EXPECT_FALSE(peek.has_model);
  EXPECT_EQ(peek.model, "");
  EXPECT_FALSE(peek.stream);
  EXPECT_TRUE(PeekRequestBody("{}").ok());
  EXPECT_TRUE(PeekRequestBody(" \r\n\t{ } \n").ok());
  EXPECT_FALSE(PeekRequestBody(R"({"stream":false})").stream);
  EXPECT_FALSE(PeekRequestBody(R"({"stream":null})").stream);
}

TEST(BodyPeek, NestedModelKeysAreIgnored) {
  const std::string body =
      R"({"messages":[{"role":"user","content":"x","model":"inner"}],)"
      R"("tools":{"model":"tool-model","stream":true},"metadata":{"a":[{"model":"deep"}]},)"
      R"("model":"outer"})";
  const BodyPeek peek = PeekRequestBody(body);
  ASSERT_TRUE(peek.ok()) << peek.error;
  EXPECT_EQ(peek.model, "outer");
  EXPECT_FALSE(peek.stream);
  EXPECT_EQ(body.substr(peek.model_begin, peek.model_end - peek.model_begin), "\"outer\"");
}

TEST(BodyPeek, StringsThatLookLikeKeysAreSkipped) {
  const std::string body = R"({"content":"\"model\":\"fake\", {\"stream\":true}","model":"real"})";
  const BodyPeek peek = PeekRequestBody(body);
  ASSERT_TRUE(peek.ok()) << peek.error;
  EXPECT_EQ(peek.model, "real");
  EXPECT_FALSE(peek.stream);
}

TEST(BodyPeek, EscapedModelIsDecoded) {
  EXPECT_EQ(PeekRequestBody(R"({"model":"deep\u0073eek-chat"})").model, "deepseek-chat");
  EXPECT_EQ(PeekRequestBody(R"({"model":"a\"b\\c\/d\n"})").model, "a\"b\\c/d\n");
  EXPECT_EQ(PeekRequestBody(R"({"model":"caf\u00e9"})").model, "caf\xc3\xa9");
  EXPECT_EQ(PeekRequestBody(R"({"model":"\ud83d\ude00"})").model, "\xf0\x9f\x98\x80");
  // An escaped key still names the member.
  EXPECT_EQ(PeekRequestBody(R"({"mod\u0065l":"m1"})").model, "m1");
  // Raw UTF-8 passes through.
  EXPECT_EQ(PeekRequestBody("{\"model\":\"\xe6\xa8\xa1\xe5\x9e\x8b\"}").model,
            "\xe6\xa8\xa1\xe5\x9e\x8b");
}

TEST(BodyPeek, WhitespaceEverywhere) {
  const std::string body = " {\n  \"model\" :\t\"m\" ,\r\n \"stream\" : true \n}\n";
  const BodyPeek peek = PeekRequestBody(body);
  ASSERT_TRUE(peek.ok()) << peek.error;
  EXPECT_EQ(peek.model, "m");
  EXPECT_TRUE(peek.stream);
  EXPECT_EQ(body[peek.object_begin], '{');
  EXPECT_EQ(body[peek.object_end], '}');
}

// Issue 10 item 3: case-insensitive upstreams (Go's encoding/json) would read another key
// as the model than the one the proxy routed, logged and allow-listed.
TEST(BodyPeek, AmbiguousModelAndStreamKeysAreRejected) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {R"({"model":"m1","MODEL":"m2"})", R"(key "MODEL" differs from "model" only in case)"},
      {R"({"Model":"m2","model":"m1"})", R"(key "Model" differs from "model" only in case)"},
      {R"({"model":"m1","Stream":true})", R"(key "Stream" differs from "stream" only in case)"},
      {R"({"model":"a","model":"b"})", R"(duplicate "model" key)"},
      {R"({"model":"a","stream":true,"stream":false})", R"(duplicate "stream" key)"},
      // Keys are compared unescaped: \u0065 is 'e'.
      {R"({"model":"a","mod\u0065l":"b"})", R"(duplicate "model" key)"},
      {R"({"model":"a","MOD\u0045L":"b"})", R"(key "MODEL" differs from "model" only in case)"},
      // U+017F (long s) folds to 's' in Go: "ſtream" would be read as "stream".
      {"{\"\xC5\xBFtream\":true}", "key \"\xC5\xBFtream\" differs from \"stream\" only in case"},
      {R"({"\u017Ftream":true})", "key \"\xC5\xBFtream\" differs from \"stream\" only in case"},
  };
  for (const auto& [body, message] : cases) {
    EXPECT_EQ(PeekRequestBody(body).error, message) << body;
  }
  // Nested keys and other spellings are not ambiguous.
  for (std::string_view fine : {R"({"model":"a","messages":[{"MODEL":"x","model":"y"}]})",
                                R"({"model":"a","models":1,"modelo":2,"mode":3,"streams":4})",
                                R"({"model":"a","meta":{"Stream":true,"stream":false}})",
                                R"({"model":"a","stream_options":{},"STREAM_OPTIONS":{}})"}) {
    EXPECT_TRUE(PeekRequestBody(fine).ok()) << fine << ": " << PeekRequestBody(fine).error;
  }
}

TEST(BodyPeek, StreamOptions) {
  BodyPeek peek = PeekRequestBody(R"({"stream":true,"stream_options":{"include_usage":true}})");
  ASSERT_TRUE(peek.ok());
  EXPECT_TRUE(peek.has_stream_options);
  EXPECT_TRUE(peek.client_include_usage);
  peek = PeekRequestBody(
      R"({"stream_options":{"x":[1,{"include_usage":true}],"include_usage":false}})");
  ASSERT_TRUE(peek.ok()) << peek.error;
  EXPECT_TRUE(peek.has_stream_options);
  EXPECT_FALSE(peek.client_include_usage);
  peek = PeekRequestBody(R"({"stream_options":null})");
  ASSERT_TRUE(peek.ok());
  EXPECT_TRUE(peek.has_stream_options);
  EXPECT_FALSE(peek.client_include_usage);
}

TEST(BodyPeek, RejectsEveryBadInput) {
  for (std::string_view bad : {
           "",
           "   ",
           "null",
           "[]",
           "[{\"model\":\"m\"}]",
           "\"model\"",
           "5",
           "true",
           R"({"model":5})",
           R"({"model":null})",
           R"({"model":["a"]})",
           R"({"model":{"a":1}})",
           R"({"stream":"yes"})",
           R"({"stream":1})",
           R"({"model":"m")",
           R"({"model":"m)",
           R"({"model")",
           R"({"model":)",
           "{",
           R"({"model":"m",})",
           R"({,"model":"m"})",
           R"({"model" "m"})",
           R"({model:"m"})",
           R"({'model':'m'})",
           R"({"model":"m"}{"a":1})",
           R"({"model":"m"} x)",
           R"({"a":tru})",
           R"({"a":nul})",
           R"({"a":01})",
           R"({"a":1.})",
           R"({"a":-})",
           R"({"a":1e})",
           R"({"a":.5})",
           R"({"a":[1,]})",
           R"({"a":[1 2]})",
           R"({"a":{"b"}})",
           R"({"a":"\x"})",
           R"({"a":"\u12G4"})",
           R"({"a":"\u12"})",
           "{\"a\":\"tab\there\"}",
           "{\"a\":\"nl\nhere\"}",
           "garbage",
           "\xff\xfe{}",
           R"({"a":[}])",
           R"({"a":{]})",
       }) {
    const BodyPeek peek = PeekRequestBody(bad);
    EXPECT_FALSE(peek.ok()) << "accepted: " << bad;
  }
}

TEST(BodyPeek, ErrorMessagesNameTheProblem) {
  EXPECT_EQ(PeekRequestBody(R"({"model":5})").error, "\"model\" must be a string");
  EXPECT_EQ(PeekRequestBody("[]").error, "request body must be a JSON object");
  EXPECT_EQ(PeekRequestBody("null").error, "request body must be a JSON object");
  EXPECT_EQ(PeekRequestBody(R"({"model":"m")").error, "request body is not valid JSON");
}

TEST(BodyPeek, AcceptsValidNumbersAndLiterals) {
  EXPECT_TRUE(
      PeekRequestBody(
          R"({"a":0,"b":-1.5e+10,"c":2E-3,"d":true,"e":false,"f":null,"g":[],"h":{},"i":[[[]]],"j":"\u00e9\n"})")
          .ok());
}

TEST(BodyPeek, DeepNestingIsBoundedNotACrash) {
  std::string ok_body = "{\"a\":" + std::string(200, '[') + std::string(200, ']') + "}";
  EXPECT_TRUE(PeekRequestBody(ok_body).ok());
  std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_FALSE(PeekRequestBody(deep).ok());
}

TEST(BodyPeek, TenMegabytesOfGarbageIsRejected) {
  std::string garbage(10 << 20, 'x');
  EXPECT_FALSE(PeekRequestBody(garbage).ok());
  std::string unterminated = "{\"model\":\"" + std::string(10 << 20, 'y');
  EXPECT_FALSE(PeekRequestBody(unterminated).ok());
}

// Differential check against nlohmann::json on many mutated bodies (ASCII only, where both
// must agree exactly): accepted exactly when it is a JSON object whose model is a string
// and whose stream is a boolean or null, with the same decoded model.
TEST(BodyPeek, AgreesWithAFullJsonParserOnMutatedBodies) {
  const std::string seeds[] = {
      R"({"model":"gpt-4o","messages":[{"role":"user","content":"hi \"there\" \\ \u00e9"}],"stream":true,"temperature":0.5})",
      R"({"messages":[{"role":"system","content":"x"},{"role":"user","content":[{"type":"text","text":"y"}]}],"model":"a\/b","n":1,"stop":null,"logit_bias":{"50256":-100}})",
      R"( { "stream" : false , "model" : "m" , "stream_options" : { "include_usage" : true } } )",
  };
  const std::string alphabet = "{}[]\":,\\ 01-.eEtrufalsn\tmodelstream\n";
  std::mt19937 random(12345);
  int checked = 0;
  for (const std::string& seed : seeds) {
    for (int round = 0; round < 4000; ++round) {
      std::string body = seed;
      const int edits = 1 + static_cast<int>(random() % 3);
      for (int e = 0; e < edits && !body.empty(); ++e) {
        const size_t at = random() % body.size();
        switch (random() % 3) {
          case 0:
            body.erase(at, 1);
            break;
          case 1:
            body.insert(at, 1, alphabet[random() % alphabet.size()]);
            break;
          default:
            body[at] = alphabet[random() % alphabet.size()];
            break;
        }
      }
      if (random() % 5 == 0) body.resize(random() % (body.size() + 1));  // truncation
      const BodyPeek peek = PeekRequestBody(body);
      // The top-level keys in order (nlohmann's DOM keeps only the last duplicate).
      std::vector<std::string> keys;
      const nlohmann::json parsed = nlohmann::json::parse(
          body,
          [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& value) {
            if (depth == 1 && event == nlohmann::json::parse_event_t::key) {
              keys.push_back(value.get<std::string>());
            }
            return true;
          },
          false);
      bool expect_ok = !parsed.is_discarded() && parsed.is_object();
      for (std::string_view name : {"model", "stream"}) {
        const auto same = std::count(keys.begin(), keys.end(), name);
        const auto folded = std::count_if(keys.begin(), keys.end(), [&](const std::string& k) {
          return k.size() == name.size() &&
                 std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
                   return std::tolower(static_cast<unsigned char>(a)) == b;
                 });
        });
        if (same > 1 || folded > same) expect_ok = false;
      }
      if (expect_ok && parsed.contains("model") && !parsed["model"].is_string()) expect_ok = false;
      if (expect_ok && parsed.contains("stream") && !parsed["stream"].is_boolean() &&
          !parsed["stream"].is_null()) {
        expect_ok = false;
      }
      ASSERT_EQ(peek.ok(), expect_ok) << "body: " << body << " error: " << peek.error;
      if (expect_ok) {
        ASSERT_EQ(peek.model, parsed.value("model", std::string())) << body;
        ASSERT_EQ(peek.stream, parsed.contains("stream") && parsed["stream"].is_boolean() &&
                                   parsed["stream"].get<bool>())
            << body;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 100);  // the mutations keep enough valid bodies to compare
}

// The rewritten body equals the original except for the model value's bytes.
void ExpectOnlyModelChanged(const std::string& body, std::string_view new_model,
                            const std::string& expected) {
  const BodyPeek peek = PeekRequestBody(body);
  ASSERT_TRUE(peek.ok()) << peek.error;
  const BodyRewrite rewrite{.model = new_model};
  EXPECT_TRUE(NeedsRewrite(peek, rewrite));
  const std::string out = RewriteRequestBody(body, peek, rewrite);
  EXPECT_EQ(out, expected);
  EXPECT_EQ(out.substr(0, peek.model_begin), body.substr(0, peek.model_begin));
  EXPECT_EQ(out.substr(out.size() - (body.size() - peek.model_end)), body.substr(peek.model_end));
  const BodyPeek again = PeekRequestBody(out);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.model, new_model);
}

TEST(BodyRewrite, ReplacesOnlyTheModelBytes) {
  ExpectOnlyModelChanged(R"({"model":"gpt-4o","messages":[{"content":"model"}]})", "deepseek-chat",
                         R"({"model":"deepseek-chat","messages":[{"content":"model"}]})");
  ExpectOnlyModelChanged(" {\n \"messages\" : [ ] ,\n \"model\" :  \"x\"  ,\"stream\":true }\n",
                         "y",
                         " {\n \"messages\" : [ ] ,\n \"model\" :  \"y\"  ,\"stream\":true }\n");
  ExpectOnlyModelChanged(R"({"model":"deep\u0073eek"})", "glm-4.7", R"({"model":"glm-4.7"})");
  ExpectOnlyModelChanged(R"({"model":"a"})", "quote\"and\\back", R"({"model":"quote\"and\\back"})");
}

TEST(BodyRewrite, SameModelNeedsNoRewrite) {
  const std::string body = R"({"model":"deep\u0073eek"})";
  const BodyPeek peek = PeekRequestBody(body);
  EXPECT_FALSE(NeedsRewrite(peek, BodyRewrite{.model = "deepseek"}));
  EXPECT_EQ(RewriteRequestBody(body, peek, BodyRewrite{.model = "deepseek"}), body);
  EXPECT_FALSE(NeedsRewrite(peek, BodyRewrite{}));
}

TEST(BodyRewrite, InsertsModelWhenAbsent) {
  std::string body = R"({"messages":[]})";
  BodyPeek peek = PeekRequestBody(body);
  EXPECT_TRUE(NeedsRewrite(peek, BodyRewrite{.model = "m"}));
  EXPECT_EQ(RewriteRequestBody(body, peek, BodyRewrite{.model = "m"}),
            R"({"model":"m","messages":[]})");
  body = " { } ";
  peek = PeekRequestBody(body);
  EXPECT_EQ(RewriteRequestBody(body, peek, BodyRewrite{.model = "m"}), R"( {"model":"m" } )");
}

TEST(BodyRewrite, AddsIncludeUsage) {
  std::string body = R"({"model":"a","stream":true})";
  BodyPeek peek = PeekRequestBody(body);
  BodyRewrite rewrite{.model = "b", .add_include_usage = true};
  std::string out = RewriteRequestBody(body, peek, rewrite);
  EXPECT_EQ(out, R"({"model":"b","stream":true,"stream_options":{"include_usage":true}})");
  BodyPeek again = PeekRequestBody(out);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again.client_include_usage);

  body = "{ \"stream\":true\n}\n";
  peek = PeekRequestBody(body);
  out =
      RewriteRequestBody(body, peek, BodyRewrite{.model = std::nullopt, .add_include_usage = true});
  EXPECT_EQ(out, "{ \"stream\":true\n,\"stream_options\":{\"include_usage\":true}}\n");
  EXPECT_TRUE(nlohmann::json::accept(out));

  body = "{}";
  peek = PeekRequestBody(body);
  out = RewriteRequestBody(body, peek, BodyRewrite{.model = "m", .add_include_usage = true});
  EXPECT_EQ(out, R"({"model":"m","stream_options":{"include_usage":true}})");

  // Already present: left alone.
  body = R"({"stream":true,"stream_options":{"include_usage":false}})";
  peek = PeekRequestBody(body);
  EXPECT_FALSE(NeedsRewrite(peek, BodyRewrite{.model = std::nullopt, .add_include_usage = true}));
  EXPECT_EQ(
      RewriteRequestBody(body, peek, BodyRewrite{.model = std::nullopt, .add_include_usage = true}),
      body);
}

TEST(BodyRewrite, LargeBodyKeepsEveryOtherByte) {
  std::string prompt;
  for (int i = 0; i < 100000; ++i) prompt += "word\\\"" + std::to_string(i) + " ";
  const std::string body = R"({"messages":[{"role":"user","content":")" + prompt +
                           R"("}],"model":"auto","temperature":0.7})";
  const BodyPeek peek = PeekRequestBody(body);
  ASSERT_TRUE(peek.ok()) << peek.error;
  EXPECT_EQ(peek.model, "auto");
  const std::string out = RewriteRequestBody(body, peek, BodyRewrite{.model = "deepseek-chat"});
  std::string expected = body;
  expected.replace(peek.model_begin, peek.model_end - peek.model_begin, "\"deepseek-chat\"");
  EXPECT_EQ(out, expected);
}

TEST(JsonHelpers, AppendJsonStringEscapes) {
  std::string out;
  AppendJsonString(out, std::string("a\"\\\n\x01", 5));
  EXPECT_EQ(out, R"("a\"\\\n\u0001")");
}

// The string scanner reads 16 and 8 bytes at a time: a stop byte (quote, backslash,
// control character) must be found at every offset of those blocks.
TEST(BodyPeek, StopBytesAreFoundAtEveryOffsetOfLongStrings) {
  for (size_t prefix = 0; prefix < 70; ++prefix) {
    const std::string pad(prefix, 'a');
    // An escaped quote inside a long value: still one string, the body is fine.
    const std::string escaped = R"({"messages":[{"content":")" + pad + R"(\"x)" + pad +
                                R"("}],"model":"m)" + pad + R"(","stream":true})";
    BodyPeek ok = PeekRequestBody(escaped);
    ASSERT_TRUE(ok.ok()) << "prefix " << prefix << ": " << ok.error;
    EXPECT_EQ(ok.model, "m" + pad) << prefix;
    EXPECT_TRUE(ok.stream) << prefix;
    // A raw control character inside a string is invalid JSON wherever it sits.
    const std::string control = R"({"model":"m","content":")" + pad + "\n" + pad + R"("})";
    EXPECT_FALSE(PeekRequestBody(control).ok()) << "prefix " << prefix;
    // The closing quote right at a block boundary ends the string there.
    const std::string boundary = R"({"content":")" + pad + R"(","model":"q"})";
    BodyPeek b = PeekRequestBody(boundary);
    ASSERT_TRUE(b.ok()) << prefix;
    EXPECT_EQ(b.model, "q") << prefix;
  }
}

namespace hostile {

// The reader's limits and refusals, one hostile input at a time.
TEST(BodyPeekHostile, NestingAtTheLimitPassesOneDeeperFails) {
  // The top-level object is depth 1.
  const auto nested = [](size_t depth) {
    return "{\"a\":" + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
  };
  EXPECT_TRUE(PeekRequestBody(nested(kMaxJsonDepth)).ok());
  EXPECT_EQ(PeekRequestBody(nested(kMaxJsonDepth + 1)).error, "request body is not valid JSON");
  std::string objects = "{\"model\":\"m\",\"a\":";
  for (int i = 0; i < 5000; ++i) objects += "{\"b\":";
  objects += "1" + std::string(5001, '}');
  EXPECT_FALSE(PeekRequestBody(objects).ok());
}

// On-Demand skips an unread value by its brackets alone; every value is read, so a wrong
// separator or bracket deep inside is still caught (found by the mutation test above).
TEST(BodyPeekHostile, SeparatorsInsideNestedValuesAreChecked) {
  for (std::string_view bad : {R"({"model":"m","a":["x":"y"}]})", R"({"a":["x" "y"],"model":"m"})",
                               R"({"a":{"b":"c" "d":1}})", R"({"a":[{"b":"c"]})",
                               R"({"a":[1,"s",]})", R"({"a":{"b":"c",}})", R"({"a":["s"}})"}) {
    EXPECT_EQ(PeekRequestBody(bad).error, "request body is not valid JSON") << bad;
    EXPECT_FALSE(nlohmann::json::accept(bad)) << bad;
  }
}

TEST(BodyPeekHostile, HugeNumbers) {
  // Valid JSON a double can hold (or round): accepted, as nlohmann and upstreams do.
  EXPECT_TRUE(PeekRequestBody(R"({"seed":123456789012345678901234567890,"model":"m"})").ok());
  EXPECT_TRUE(PeekRequestBody(R"({"t":1e-400,"u":-18446744073709551617})").ok());
  EXPECT_TRUE(PeekRequestBody("{\"n\":" + std::string(300, '9') + "}").ok());
  // Beyond a double: nlohmann refuses these too.
  const std::string too_big = "{\"n\":" + std::string(5000, '9') + "}";
  EXPECT_FALSE(PeekRequestBody(too_big).ok());
  EXPECT_FALSE(nlohmann::json::accept(too_big));
  EXPECT_FALSE(PeekRequestBody(R"({"t":1e400})").ok());
  EXPECT_FALSE(nlohmann::json::accept(R"({"t":1e400})"));
}

TEST(BodyPeekHostile, InvalidUtf8IsRejectedAnywhere) {
  for (std::string_view bad : {
           "{\"model\":\"\xff\"}",
           "{\"content\":\"ok \xc3\"}",           // truncated sequence
           "{\"content\":\"\xc0\xaf\"}",          // overlong '/'
           "{\"content\":\"\xed\xa0\x80\"}",      // UTF-8 encoded surrogate
           "{\"content\":\"\xf4\x90\x80\x80\"}",  // above U+10FFFF
           "{\"\xfe\":1}",                        // in a key
           "{\"a\":1}\xff",                       // after the object
       }) {
    EXPECT_EQ(PeekRequestBody(bad).error, "request body is not valid JSON") << bad;
    EXPECT_FALSE(nlohmann::json::accept(bad)) << bad;
  }
  EXPECT_EQ(PeekRequestBody("{\"model\":\"\xe6\xa8\xa1\xf0\x9f\x98\x80\"}").model,
            "\xe6\xa8\xa1\xf0\x9f\x98\x80");
}

TEST(BodyPeekHostile, EveryTruncationIsRejected) {
  const std::string body =
      R"({"model":"gpt-4o","messages":[{"role":"user","content":"h\u00e9\"i"}],)"
      R"("stream":true,"stream_options":{"include_usage":true},"n":-1.5e3,"x":null})";
  ASSERT_TRUE(PeekRequestBody(body).ok());
  for (size_t n = 0; n < body.size(); ++n) {
    EXPECT_FALSE(PeekRequestBody(body.substr(0, n)).ok()) << n;
  }
}

TEST(BodyPeekHostile, NulBytes) {
  using namespace std::string_literals;
  EXPECT_FALSE(PeekRequestBody("{\"model\":\"a\0b\"}"s).ok());  // raw control character
  EXPECT_FALSE(PeekRequestBody("{\"model\":\"m\"}\0"s).ok());   // trailing byte
  EXPECT_FALSE(PeekRequestBody("\0{\"model\":\"m\"}"s).ok());
  EXPECT_FALSE(PeekRequestBody("{\"mo\0del\":\"m\"}"s).ok());
  // Escaped NUL is valid JSON and is decoded.
  const BodyPeek peek = PeekRequestBody(R"({"model":"a\u0000b"})");
  ASSERT_TRUE(peek.ok()) << peek.error;
  EXPECT_EQ(peek.model, "a\0b"s);
}

TEST(BodyPeekHostile, TenMegabyteStrings) {
  const std::string content(10 << 20, 'c');
  const std::string body = R"({"messages":[{"content":")" + content + R"("}],"model":"m"})";
  BodyPeek peek = PeekRequestBody(body);
  ASSERT_TRUE(peek.ok()) << peek.error;
  EXPECT_EQ(body.substr(peek.model_begin, peek.model_end - peek.model_begin), "\"m\"");
  const std::string big_model = R"({"model":")" + content + R"("})";
  peek = PeekRequestBody(big_model);
  ASSERT_TRUE(peek.ok());
  EXPECT_EQ(peek.model.size(), content.size());
  EXPECT_EQ(peek.model_end, big_model.size() - 1);
  // An escape at the very end of a long string is still checked.
  EXPECT_FALSE(PeekRequestBody(R"({"a":")" + content + R"(\q"})").ok());
}

TEST(BodyPeekHostile, EscapedKeysAreTheKeysTheyName) {
  BodyPeek peek = PeekRequestBody(R"({"\u006d\u006f\u0064\u0065\u006c":"m","str\u0065am":true})");
  ASSERT_TRUE(peek.ok()) << peek.error;
  EXPECT_EQ(peek.model, "m");
  EXPECT_TRUE(peek.stream);
  // A bad escape in a key, or a lone surrogate, is invalid.
  EXPECT_FALSE(PeekRequestBody(R"({"mod\el":"m"})").ok());
  EXPECT_FALSE(PeekRequestBody(R"({"\ud800":"m"})").ok());
  // An escaped key that is not "model" after unescaping is just another key.
  peek = PeekRequestBody(R"({"model\u0000":"x","model":"m"})");
  ASSERT_TRUE(peek.ok()) << peek.error;
  EXPECT_EQ(peek.model, "m");
}

// The padded and the copying entry points read the same thing; the padded one reads in
// place, so offsets refer to the caller's buffer either way.
TEST(BodyPeekHostile, PaddedAndCopiedInputsAgree) {
  const std::string body = R"( {"stream":true, "model" : "gpt-4o" } )";
  std::unique_ptr<char[]> buffer(new char[body.size() + kJsonPadding]);
  std::memcpy(buffer.get(), body.data(), body.size());
  std::memset(buffer.get() + body.size(), '"', kJsonPadding);  // padding bytes never matter
  const BodyPeek padded =
      PeekRequestBody(std::string_view(buffer.get(), body.size()), kJsonPadding);
  const BodyPeek copied = PeekRequestBody(body);
  ASSERT_TRUE(padded.ok()) << padded.error;
  ASSERT_TRUE(copied.ok()) << copied.error;
  for (const BodyPeek* p : {&padded, &copied}) {
    EXPECT_EQ(p->model, "gpt-4o");
    EXPECT_TRUE(p->stream);
    EXPECT_EQ(body.substr(p->model_begin, p->model_end - p->model_begin), "\"gpt-4o\"");
    EXPECT_EQ(p->object_begin, 1u);
    EXPECT_EQ(p->object_end, body.size() - 2);
  }
  // Too little padding: copied, same answer.
  EXPECT_EQ(PeekRequestBody(std::string_view(buffer.get(), body.size()), 3).model, "gpt-4o");
}

}  // namespace hostile

}  // namespace
}  // namespace llmproxy
