/** @file libFuzzer target: HTTP JSON request bodies (bp_http_req_json and its 400 problem). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "http/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* bp_http_req_json reads only body/body_len and writes only resp: no env, no server. */
    bp_http_req_t req;
    json_t *root = NULL;
    memset(&req, 0, sizeof(req));
    req.body = size ? (const char *)data : NULL;
    req.body_len = size;
    if (bp_http_req_json(&req, &root) == BP_OK) {
        if (!json_is_object(root) || req.resp.body)
            abort();
        /* Accepted bodies are handed to the route parsers as they would be; serialising must
         * work and yield JSON that parses again under the same rules. */
        char *text = json_dumps(root, JSON_COMPACT);
        if (!text)
            abort();
        json_t *again = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
        if (!again || !json_equal(root, again))
            abort();
        json_decref(again);
        free(text);
        json_decref(root);
    } else {
        /* Refused: a 400 problem+json that is itself valid JSON. */
        if (root || req.resp.status != 400 || !req.resp.body)
            abort();
        json_t *problem = json_loadb(req.resp.body, req.resp.body_len, 0, NULL);
        if (!problem)
            abort();
        json_decref(problem);
    }
    free(req.resp.body);
    return 0;
}
