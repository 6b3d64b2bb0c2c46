#include "daemon/privileges.hpp"

#include <cap-ng.h>
#include <linux/capability.h>

#include <string>
#include <vector>

namespace pvc {

std::string drop_capabilities() {
  static constexpr int kKept[] = {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
                                  CAP_FOWNER, CAP_LEASE};
  capng_get_caps_process();
  if (capng_have_capabilities(CAPNG_SELECT_CAPS) == CAPNG_NONE) {
    return "no capabilities held; nothing to drop";
  }
  std::vector<int> keep;
  for (const int cap : kKept) {
    if (capng_have_capability(CAPNG_PERMITTED, static_cast<unsigned>(cap)) !=
        0) {
      keep.push_back(cap);
    }
  }
  capng_clear(CAPNG_SELECT_BOTH);
  std::string kept;
  for (const int cap : keep) {
    capng_update(CAPNG_ADD,
                 static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED |
                                           CAPNG_BOUNDING_SET),
                 static_cast<unsigned>(cap));
    const char* name = capng_capability_to_name(static_cast<unsigned>(cap));
    kept += kept.empty() ? "" : ", ";
    kept += name != nullptr ? name : "?";
  }
  // The bounding set needs CAP_SETPCAP to change; without it, drop from
  // the process's own sets at least.
  if (capng_apply(CAPNG_SELECT_BOTH) != 0 &&
      capng_apply(CAPNG_SELECT_CAPS) != 0) {
    return "could not drop capabilities (capng_apply failed)";
  }
  return "kept " + (kept.empty() ? std::string("none") : kept) +
         "; dropped all others, CAP_SYS_ADMIN included";
}

}  // namespace pvc
