#ifndef FLEET_CRABBITMQ_SHIM_H
#define FLEET_CRABBITMQ_SHIM_H
// rabbitmq-c >= 0.12 installs <rabbitmq-c/amqp.h>; Debian 12's 0.11 installs <amqp.h>. Accept both.
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#include <rabbitmq-c/ssl_socket.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#endif
#include <sys/time.h>

// amqp_login is variadic (the SASL method's arguments follow); Swift cannot call it. PLAIN only.
static inline amqp_rpc_reply_t cshim_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
                                                      int channel_max, int frame_max, int heartbeat,
                                                      const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat, AMQP_SASL_METHOD_PLAIN, user,
                      password);
}

// The same, with client properties (the connection name shown in the management UI).
static inline amqp_rpc_reply_t cshim_amqp_login_plain_with_properties(
    amqp_connection_state_t state, const char *vhost, int channel_max, int frame_max, int heartbeat,
    const amqp_table_t *properties, const char *user, const char *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, properties,
                                      AMQP_SASL_METHOD_PLAIN, user, password);
}

// Builds amqp_bytes_t over caller-owned memory. The caller keeps the memory alive for the C call.
static inline amqp_bytes_t cshim_amqp_bytes(const void *bytes, size_t len) {
    amqp_bytes_t b;
    b.len = len;
    b.bytes = (void *)bytes;
    return b;
}

// The decoded method of a frame, for the frame kinds Swift needs to look into.
static inline amqp_method_number_t cshim_frame_method_id(const amqp_frame_t *frame) {
    return frame->payload.method.id;
}
static inline void *cshim_frame_method_decoded(const amqp_frame_t *frame) {
    return frame->payload.method.decoded;
}

#endif
