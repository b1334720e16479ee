// Small core pieces of access control and webhooks: key material, rates, URLs, HMAC, metrics text.
#include <gtest/gtest.h>

#include "core/api_key.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "core/metrics.h"
#include "core/url.h"

namespace statim {
namespace {

TEST(ApiKeyTest, GeneratedKeysHaveTheirPrefixAndHash) {
  auto g = generateApiKey();
  EXPECT_TRUE(g.key.starts_with("sk-statim-"));
  EXPECT_EQ(g.key.size(), 10u + 48u);
  EXPECT_EQ(apiKeyPrefix(g.key), g.prefix);
  EXPECT_EQ(g.hash, crypto::sha256Hex(g.key));
  EXPECT_NE(generateApiKey().key, g.key);
  EXPECT_FALSE(apiKeyPrefix("sk-statim-short"));
  EXPECT_FALSE(apiKeyPrefix("sk-other-" + std::string(49, 'a')));
  EXPECT_FALSE(apiKeyPrefix("sk-statim-" + std::string(47, 'a') + "g"));
}

TEST(ApiKeyTest, RatesParseOrNameTheForm) {
  EXPECT_DOUBLE_EQ(parseRate("10/s")->perSecond(), 10);
  EXPECT_DOUBLE_EQ(parseRate("600/m")->perSecond(), 10);
  EXPECT_DOUBLE_EQ(parseRate("3600/h")->perSecond(), 1);
  EXPECT_DOUBLE_EQ(parseRate("2.5/s")->count, 2.5);
  for (auto bad : {"", "10", "10/d", "0/s", "-1/s", "x/s", "10/ss", "/s"}) {
    auto r = parseRate(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("must look like 10/s, 600/m or 1000/h"), std::string::npos);
  }
}

TEST(CryptoTest, KnownAnswers) {
  EXPECT_EQ(crypto::sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // RFC 4231 test case 2.
  EXPECT_EQ(crypto::hmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_TRUE(crypto::constantTimeEqual("abc", "abc"));
  EXPECT_FALSE(crypto::constantTimeEqual("abc", "abd"));
  EXPECT_FALSE(crypto::constantTimeEqual("abc", "abcd"));
  EXPECT_EQ(crypto::randomHex(16).size(), 32u);
}

TEST(UrlTest, HttpUrlsParseAndBadOnesNameTheRule) {
  auto u = parseHttpUrl("https://Example.com:8443/hooks/x?a=1", "webhook");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->origin(), "https://Example.com:8443");
  EXPECT_EQ(u->target, "/hooks/x?a=1");
  EXPECT_EQ(parseHttpUrl("http://h", "w")->target, "/");
  EXPECT_EQ(parseHttpUrl("http://h", "w")->port, 80);
  EXPECT_EQ(parseHttpUrl("http://[::1]:9000/x", "w")->host, "[::1]");
  std::pair<const char*, const char*> bad[] = {
      {"ftp://h/x", "scheme 'ftp' is not allowed"}, {"h/x", "no scheme"},
      {"http:///x", "no host"},                     {"http://h:0/", "the port must be 1..65535"},
      {"http://h:99999/", "the port must be 1..65535"}, {"http://u:p@h/", "no user name or password"},
      {"http://h/a b", "no spaces"},                {"http://h/#f", "no fragment"},
  };
  for (auto [text, rule] : bad) {
    auto r = parseHttpUrl(text, "webhook");
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().field, "webhook");
    EXPECT_NE(r.error().message.find(rule), std::string::npos) << r.error().message;
  }
}

TEST(ClockTest, IsoTimesRoundTrip) {
  Micros t = 1712503325813912;
  EXPECT_EQ(parseIsoUtc(formatIsoUtc(t)), t);
  EXPECT_EQ(parseIsoUtc("2024-04-07T15:22:05"), 1712503325000000);
  EXPECT_EQ(parseIsoUtc("2024-04-07T15:22:05.5Z"), 1712503325500000);
  for (auto bad : {"", "2024-13-01T00:00:00", "2024-02-30T00:00:00", "yesterday", "2024-04-07T15:22:05.x"}) {
    EXPECT_FALSE(parseIsoUtc(bad)) << bad;
  }
}

TEST(MetricsTest, RendersPrometheusTextWithCumulativeBuckets) {
  Metrics m;
  m.declareCounter("c_total", "A counter.");
  m.declareGauge("g", "A gauge.");
  m.declareHistogram("h_seconds", "A histogram.", {0.1, 1});
  m.add("c_total", {{"model", "a\"b\\c\nd"}}, 2);
  m.set("g", {}, 3.5);
  m.observe("h_seconds", {{"m", "x"}}, 0.1);  // le is inclusive
  m.observe("h_seconds", {{"m", "x"}}, 0.5);
  m.observe("h_seconds", {{"m", "x"}}, 7);
  EXPECT_EQ(m.render(),
            "# HELP c_total A counter.\n# TYPE c_total counter\n"
            "c_total{model=\"a\\\"b\\\\c\\nd\"} 2\n"
            "# HELP g A gauge.\n# TYPE g gauge\ng 3.5\n"
            "# HELP h_seconds A histogram.\n# TYPE h_seconds histogram\n"
            "h_seconds_bucket{m=\"x\",le=\"0.1\"} 1\n"
            "h_seconds_bucket{m=\"x\",le=\"1\"} 2\n"
            "h_seconds_bucket{m=\"x\",le=\"+Inf\"} 3\n"
            "h_seconds_sum{m=\"x\"} 7.6\n"
            "h_seconds_count{m=\"x\"} 3\n");
  EXPECT_THROW(m.add("undeclared", {}), std::logic_error);
  EXPECT_THROW(m.set("c_total", {}, 1), std::logic_error);
}

}  // namespace
}  // namespace statim
