/* The raw librabbitmq baseline for fleet-bench's AMQP figure: the same workload with no Swift wrapper.
 * N persistent 256-byte messages to one quorum queue, at most WINDOW unconfirmed publishes, and a
 * consumer thread with prefetch WINDOW acking each message.
 * Build and run: see scripts/bench.sh.  Usage: amqp_raw HOST PORT MESSAGES WINDOW */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *host;
static int port, total, window;
static char queue[64];

static void die_on(amqp_rpc_reply_t r, const char *what) {
    if (r.reply_type != AMQP_RESPONSE_NORMAL) { fprintf(stderr, "amqp_raw: %s failed\n", what); exit(1); }
}

static amqp_connection_state_t open_conn(void) {
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    if (amqp_socket_open(s, host, port)) { fprintf(stderr, "amqp_raw: connect failed\n"); exit(1); }
    die_on(amqp_login(c, "/", 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, "guest", "guest"), "login");
    amqp_channel_open(c, 1);
    die_on(amqp_get_rpc_reply(c), "channel.open");
    return c;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *consume(void *arg) {
    (void)arg;
    amqp_connection_state_t c = open_conn();
    amqp_basic_qos(c, 1, 0, (uint16_t)window, 0);
    die_on(amqp_get_rpc_reply(c), "qos");
    amqp_basic_consume(c, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    die_on(amqp_get_rpc_reply(c), "consume");
    for (int n = 0; n < total;) {
        amqp_envelope_t env;
        amqp_maybe_release_buffers(c);
        amqp_rpc_reply_t r = amqp_consume_message(c, &env, NULL, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) continue;
        amqp_basic_ack(c, 1, env.delivery_tag, 0);
        amqp_destroy_envelope(&env);
        n++;
    }
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: amqp_raw HOST PORT MESSAGES WINDOW\n"); return 2; }
    host = argv[1]; port = atoi(argv[2]); total = atoi(argv[3]); window = atoi(argv[4]);
    snprintf(queue, sizeof queue, "bench.raw.%ld", (long)time(NULL));

    amqp_connection_state_t p = open_conn();
    amqp_table_entry_t qt = {.key = amqp_cstring_bytes("x-queue-type"),
                             .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("quorum")}};
    amqp_table_t args = {.num_entries = 1, .entries = &qt};
    amqp_queue_declare(p, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, args);
    die_on(amqp_get_rpc_reply(p), "queue.declare");
    amqp_confirm_select(p, 1);
    die_on(amqp_get_rpc_reply(p), "confirm.select");

    char body[256];
    memset(body, 'a', sizeof body);
    amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG,
                                     .delivery_mode = 2, .content_type = amqp_cstring_bytes("application/json")};
    amqp_bytes_t bytes = {.len = sizeof body, .bytes = body};

    double start = now();
    pthread_t consumer;
    pthread_create(&consumer, NULL, consume, NULL);
    uint64_t sent = 0, confirmed = 0;
    while (confirmed < (uint64_t)total) {
        while (sent < (uint64_t)total && sent - confirmed < (uint64_t)window) {
            if (amqp_basic_publish(p, 1, amqp_empty_bytes, amqp_cstring_bytes(queue), 0, 0, &props, bytes)) {
                fprintf(stderr, "amqp_raw: publish failed\n"); return 1;
            }
            sent++;
        }
        amqp_frame_t f;
        if (amqp_simple_wait_frame(p, &f) != AMQP_STATUS_OK) { fprintf(stderr, "amqp_raw: frame failed\n"); return 1; }
        if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *ack = f.payload.method.decoded;
            confirmed = ack->delivery_tag;  /* tags are 1..n in order; multiple acks cover all below */
        }
    }
    double published = now();
    pthread_join(consumer, NULL);
    double end = now();
    printf("amqp raw C: %d messages (256 B, quorum queue, window %d): publish+confirm %.0f msg/s; "
           "publish+confirm+consume+ack %.0f msg/s\n", total, window, total / (published - start), total / (end - start));
    amqp_queue_delete(p, 1, amqp_cstring_bytes(queue), 0, 0);
    amqp_connection_close(p, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(p);
    return 0;
}
