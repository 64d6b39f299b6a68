#ifndef FLEET_CCURL_SHIM_H
#define FLEET_CCURL_SHIM_H
#include <curl/curl.h>

/*
 * Typed wrappers for libcurl's variadic calls (curl_easy_setopt, curl_easy_getinfo, curl_multi_setopt),
 * which Swift cannot call directly. Each wrapper passes exactly the argument type libcurl documents for
 * that kind of option, so Swift never has to guess a C vararg type.
 */

/* Flags for curl_global_init, as a plain constant (the macro is an expression Swift may not import). */
static const long cshim_CURL_GLOBAL_DEFAULT = CURL_GLOBAL_DEFAULT;

/* MARK: curl_easy_setopt */

/* Options of type CURLOPTTYPE_LONG (booleans, milliseconds, counts). */
static inline CURLcode cshim_curl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

/* Options of type CURLOPTTYPE_OFF_T (sizes such as CURLOPT_POSTFIELDSIZE_LARGE). */
static inline CURLcode cshim_curl_easy_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

/* Options of type CURLOPTTYPE_STRINGPOINT. libcurl copies these strings (except CURLOPT_POSTFIELDS). */
static inline CURLcode cshim_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

/* Options of type CURLOPTTYPE_OBJECTPOINT / CBPOINT (CURLOPT_WRITEDATA, CURLOPT_ERRORBUFFER, ...).
   libcurl keeps the pointer: the caller keeps the memory alive for the transfer. */
static inline CURLcode cshim_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

/* Options of type CURLOPTTYPE_SLISTPOINT (CURLOPT_HTTPHEADER). libcurl keeps the list. */
static inline CURLcode cshim_curl_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode cshim_curl_easy_setopt_writefunction(CURL *handle, curl_write_callback callback) {
    return curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, callback);
}

static inline CURLcode cshim_curl_easy_setopt_headerfunction(CURL *handle, curl_write_callback callback) {
    return curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, callback);
}

/* MARK: curl_easy_getinfo */

static inline CURLcode cshim_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

/* CURLINFO_OFF_T values, including the *_TIME_T timings (microseconds). */
static inline CURLcode cshim_curl_easy_getinfo_off_t(CURL *handle, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(handle, info, value);
}

/* CURLINFO_SOCKET values (CURLINFO_ACTIVESOCKET). */
static inline CURLcode cshim_curl_easy_getinfo_socket(CURL *handle, CURLINFO info, curl_socket_t *value) {
    return curl_easy_getinfo(handle, info, value);
}

/* CURLINFO_STRING values. The string belongs to the handle. */
static inline CURLcode cshim_curl_easy_getinfo_string(CURL *handle, CURLINFO info, const char **value) {
    char *result = NULL;
    CURLcode code = curl_easy_getinfo(handle, info, &result);
    *value = result;
    return code;
}

/* CURLINFO_CERTINFO. The list belongs to the handle and lives until it is cleaned up or reused. */
static inline CURLcode cshim_curl_easy_getinfo_certinfo(CURL *handle, struct curl_certinfo **value) {
    return curl_easy_getinfo(handle, CURLINFO_CERTINFO, value);
}

/* MARK: curl_multi_setopt */

static inline CURLMcode cshim_curl_multi_setopt_long(CURLM *handle, CURLMoption option, long value) {
    return curl_multi_setopt(handle, option, value);
}

#endif
