/* Connection guard: who may hold the agent's connections while sending
 * nothing useful.
 *
 * microhttpd's own bounds are a total, a per-address count and an idle
 * timeout that every received byte restarts. A client that trickles header
 * bytes from the operator's own address (every local client is 127.0.0.1)
 * fills the per-address count and keeps it full for as long as it likes:
 * the operator is locked out. The guard tracks, per connection, whether a
 * request is being answered, and
 *   - closes a connection that has not delivered a whole request (headers
 *     and body) within CONN_GUARD_DEADLINE_MS of connecting, or of the
 *     request line of a later request, however many bytes trickle in (an
 *     idle keep-alive connection is left to microhttpd's idle timeout);
 *   - when an address already holds its budget of connections that have
 *     not yet sent a whole request, closes the oldest of them to admit the new one, so that a client that
 *     sends its request at once is always served.
 * A connection whose request is complete is never closed by the guard.
 *
 * Closing is shutdown(2) on the socket from the guard's thread: microhttpd
 * sees the end of the stream and cleans up as for any peer that hung up.
 * The guard forgets a connection in microhttpd's CLOSED notification, which
 * comes before microhttpd closes the descriptor, and both happen under the
 * guard's lock, so a descriptor is never shut down after its reuse.
 */
#ifndef KVMSCOPE_API_CONN_GUARD_H
#define KVMSCOPE_API_CONN_GUARD_H

#include <microhttpd.h>

#define CONN_GUARD_DEADLINE_MS	5000
/* Waiting connections one address may hold; microhttpd's per-address limit
 * must be larger so that a new connection reaches the guard at all. */
#define CONN_GUARD_WAITING_PER_ADDR	48
/* Younger waiting connections are not counted: under load, wrk's requests
 * sit whole in the socket until a server thread reads them. */
#define CONN_GUARD_GRACE_MS	1000

struct conn_guard;

/* On success the caller owns *out (conn_guard__free). 0 or -errno. */
int conn_guard__new(unsigned deadline_ms, unsigned waiting_per_addr, struct conn_guard **out);
/* Stops the guard's thread. Call after MHD_stop_daemon(). */
void conn_guard__free(struct conn_guard *g);
/* MHD_OPTION_NOTIFY_CONNECTION callback; cls is the guard. */
void conn_guard__notify(void *cls, struct MHD_Connection *conn, void **socket_context,
			enum MHD_ConnectionNotificationCode toe);
/* A request line arrived (MHD_OPTION_URI_LOG_CALLBACK). */
void conn_guard__request_started(struct MHD_Connection *conn);
/* The connection's request is complete (headers and body): not closed by
 * the guard until conn_guard__answered(). */
void conn_guard__request_complete(struct MHD_Connection *conn);
/* The answer is sent (MHD_OPTION_NOTIFY_COMPLETED): the connection waits
 * for its next request, with a new deadline. */
void conn_guard__answered(struct MHD_Connection *conn);
/* Connections the guard closed so far. */
unsigned long conn_guard__closed(const struct conn_guard *g);

#endif
