/* Connection guard: see conn_guard.h for why. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "api/conn_guard.h"
#include "common/log.h"

#define CONN_GUARD_SWEEP_MS	250

struct guarded_conn {
	struct conn_guard *g;
	int fd;
	struct sockaddr_storage addr;	/* the port is ignored when compared */
	int64_t since_ms;		/* start of the current wait for a request */
	/* FRESH: connected, no request yet; RECEIVING: a request line came,
	 * the rest has not; ANSWERING: the request is whole; KEEPALIVE: the
	 * answer is sent, the next request has not begun */
	enum { FRESH, RECEIVING, ANSWERING, KEEPALIVE } state;
	bool shut;			/* the guard shut it down: it is on its way out */
	struct guarded_conn *prev, *next;
};

struct conn_guard {
	pthread_mutex_t lock;		/* the list and every entry's fields */
	pthread_cond_t stop_cv;
	pthread_t sweeper;
	bool stop;
	unsigned deadline_ms, waiting_per_addr;
	struct guarded_conn *head, *tail;
	unsigned long closed;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr));
	return true;
}

/* Connections that hold a slot without having sent a whole request. An
 * idle keep-alive connection is not one: it has proven itself a client
 * (wrk's 50 connections from 127.0.0.1 sit there between requests), and
 * microhttpd's idle timeout ends it. */
static bool waiting(const struct guarded_conn *c)
{
	return (c->state == FRESH || c->state == RECEIVING) && !c->shut;
}

/* Caller holds g->lock. */
static void shut(struct conn_guard *g, struct guarded_conn *c, const char *why)
{
	shutdown(c->fd, SHUT_RDWR);
	c->shut = true;
	g->closed++;
	log_debug("http", "connection closed by the guard: %s", why);
}

static void *sweeper_main(void *arg)
{
	struct conn_guard *g = arg;
	struct timespec until;

	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		int64_t now = mono_ms();

		for (struct guarded_conn *c = g->head; c; c = c->next)
			if (waiting(c) && now - c->since_ms > (int64_t)g->deadline_ms)
				shut(g, c, "no whole request within the deadline");
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += CONN_GUARD_SWEEP_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&g->stop_cv, &g->lock, &until);
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

int conn_guard__new(unsigned deadline_ms, unsigned waiting_per_addr, struct conn_guard **out)
{
	struct conn_guard *g = calloc(1, sizeof(*g));
	pthread_condattr_t ca;
	int rc;

	if (!g)
		return -ENOMEM;
	g->deadline_ms = deadline_ms;
	g->waiting_per_addr = waiting_per_addr ? waiting_per_addr : 1;
	pthread_mutex_init(&g->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g->stop_cv, &ca);
	pthread_condattr_destroy(&ca);
	rc = -pthread_create(&g->sweeper, NULL, sweeper_main, g);
	if (rc) {
		pthread_cond_destroy(&g->stop_cv);
		pthread_mutex_destroy(&g->lock);
		free(g);
		return rc;
	}
	*out = g;
	return 0;
}

void conn_guard__free(struct conn_guard *g)
{
	struct guarded_conn *c, *next;

	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_signal(&g->stop_cv);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->sweeper, NULL);
	/* MHD_stop_daemon() notified every close: nothing should be left */
	for (c = g->head; c; c = next) {
		next = c->next;
		free(c);
	}
	pthread_cond_destroy(&g->stop_cv);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* Caller holds g->lock. Closes the oldest waiting connection of addr when
 * the address already holds its budget of them. */
static void make_room(struct conn_guard *g, const struct sockaddr_storage *addr)
{
	struct guarded_conn *oldest = NULL;
	unsigned n = 0;

	int64_t now = mono_ms();

	for (struct guarded_conn *c = g->head; c; c = c->next) {
		/* a request a busy server has not read yet is young: only those
		 * waiting longer than CONN_GUARD_GRACE_MS count and go */
		if (!waiting(c) || !same_addr(&c->addr, addr) || now - c->since_ms < CONN_GUARD_GRACE_MS)
			continue;
		if (!oldest || c->since_ms < oldest->since_ms)
			oldest = c;
		n++;
	}
	if (n >= g->waiting_per_addr)
		shut(g, oldest, "its address holds too many connections without a request");
}

/* Ownership: the entry made at STARTED is owned by the guard's list and
 * freed at CLOSED. */
void conn_guard__notify(void *cls, struct MHD_Connection *conn, void **socket_context,
			enum MHD_ConnectionNotificationCode toe)
{
	struct conn_guard *g = cls;
	struct guarded_conn *c;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *fd = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		const union MHD_ConnectionInfo *ad = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

		*socket_context = NULL;
		c = calloc(1, sizeof(*c));
		if (!c || !fd) {
			/* untracked: microhttpd's own bounds still apply */
			free(c);
			return;
		}
		c->g = g;
		c->fd = fd->connect_fd;
		if (ad && ad->client_addr)
			memcpy(&c->addr, ad->client_addr, ad->client_addr->sa_family == AF_INET6
					  ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
		c->since_ms = mono_ms();
		pthread_mutex_lock(&g->lock);
		make_room(g, &c->addr);
		c->prev = g->tail;
		if (g->tail)
			g->tail->next = c;
		else
			g->head = c;
		g->tail = c;
		pthread_mutex_unlock(&g->lock);
		*socket_context = c;
		return;
	}
	c = *socket_context;
	if (!c)
		return;
	pthread_mutex_lock(&g->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		g->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		g->tail = c->prev;
	pthread_mutex_unlock(&g->lock);
	*socket_context = NULL;
	free(c);
}

static struct guarded_conn *entry_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *i = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return i ? i->socket_context : NULL;
}

void conn_guard__request_started(struct MHD_Connection *conn)
{
	struct guarded_conn *c = entry_of(conn);

	if (!c)
		return;
	pthread_mutex_lock(&c->g->lock);
	if (c->state == KEEPALIVE) {
		/* the deadline of a connection's next request runs from its
		 * request line */
		c->state = RECEIVING;
		c->since_ms = mono_ms();
	} else if (c->state == FRESH) {
		c->state = RECEIVING;
	}
	pthread_mutex_unlock(&c->g->lock);
}

void conn_guard__request_complete(struct MHD_Connection *conn)
{
	struct guarded_conn *c = entry_of(conn);

	if (!c)
		return;
	pthread_mutex_lock(&c->g->lock);
	c->state = ANSWERING;
	pthread_mutex_unlock(&c->g->lock);
}

void conn_guard__answered(struct MHD_Connection *conn)
{
	struct guarded_conn *c = entry_of(conn);

	if (!c)
		return;
	pthread_mutex_lock(&c->g->lock);
	c->state = KEEPALIVE;
	pthread_mutex_unlock(&c->g->lock);
}

unsigned long conn_guard__closed(const struct conn_guard *g)
{
	return g ? g->closed : 0;
}
