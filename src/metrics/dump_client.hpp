// `pvc-evictor dump`: fetches the running daemon's hot set or coldest files
// from its HTTP endpoint and prints them for a person (or as JSON).
#pragma once

#include <string>
#include <vector>

namespace pvc {

// Runs the subcommand with the arguments after "dump"; returns the exit
// code.
int run_dump(const std::vector<std::string>& args);

}  // namespace pvc
