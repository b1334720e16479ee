// A schema migration, embedded from src/store/migrations/<engine>/NNNN_name.sql at build time.
#pragma once

#include <string>
#include <vector>

namespace statim {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

extern const std::vector<Migration> kSqliteMigrations;
extern const std::vector<Migration> kPostgresMigrations;

}  // namespace statim
