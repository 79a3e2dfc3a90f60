/* The one exported symbol of libdsrt.so. Kept in its own file so that the
 * static core archive, which the unit tests link, exports nothing. */
#include "dsrt.h"

const dsrt_api *dsrt_api_table(void);

__attribute__((visibility("default"))) const dsrt_api *dsrt_get_api(void) { return dsrt_api_table(); }
