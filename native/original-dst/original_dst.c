// The original destination of a connection that iptables REDIRECTed to this process (Mooring's
// proxy listeners 15001 and 15006): getsockopt(SO_ORIGINAL_DST) for IPv4 and
// getsockopt(IP6T_SO_ORIGINAL_DST) for IPv6, as Envoy's original_dst listener filter reads it.
// Needs no capability: the kernel answers from the socket's own conntrack entry.
//
// One function, originalDst(fd, out):
//   - the original destination address as a string, with out[0] = port and out[1] = family
//     (4 or 6); an IPv4 connection to a dual-stack listener (::ffff:a.b.c.d) answers family 4;
//   - null when the connection was not redirected: no conntrack entry (ENOENT), or an original
//     destination that is the socket's own local address (tracked, but never translated);
//   - a negative errno when a system call failed (src/agent/proxy/l4/original-dst.ts names it).
// Nothing is allocated but the answer's string. Linux only.
//
// And trimMemory(): glibc's malloc_trim(0), which gives the pages of freed C heap memory back to
// the system (true when some were). A proxy's connections come and go in bursts, each leaving
// TLS and socket memory freed in the middle of the heap that glibc keeps otherwise
// (src/agent/proxy/memory-trim.ts decides when). false where the C library is not glibc. And
// heapFreeBytes(): the bytes glibc holds free in its heaps (mallinfo2's fordblks, every arena),
// what memory-trim.ts watches to know that a trim has something to give back; -1 where the C
// library is not glibc 2.33 or later.
//
// And dropPages(start, length): madvise(MADV_DONTNEED), for the pages of Node's binary that only
// its start used (src/agent/proxy/memory-trim.ts chooses the ranges). And setKeepalive and
// keepaliveOf: TCP keepalive with its three settings (a DestinationRule's tcpKeepalive; Node's
// setKeepAlive sets only the first).
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

// <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>; defined here because those
// headers clash with <netinet/in.h>.
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

static napi_value negative_errno(napi_env env, int err) {
  napi_value result;
  napi_create_int32(env, -err, &result);
  return result;
}

static napi_value original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "originalDst(fd, out): two arguments expected");
    return NULL;
  }
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "originalDst(fd, out): fd must be a number");
    return NULL;
  }
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_int32_array || length < 2) {
    napi_throw_type_error(env, NULL, "originalDst(fd, out): out must be an Int32Array of 2");
    return NULL;
  }
  int32_t *out = data;

  struct sockaddr_storage local;
  socklen_t local_len = sizeof local;
  if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0) {
    return negative_errno(env, errno);
  }

  // IPv4, or IPv4 through a dual-stack IPv6 listener (the conntrack entry is an IPv4 one).
  const struct sockaddr_in6 *local6 = (const struct sockaddr_in6 *)&local;
  const int mapped = local.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&local6->sin6_addr);
  char text[INET6_ADDRSTRLEN];
  if (local.ss_family == AF_INET || mapped) {
    struct sockaddr_in dst;
    socklen_t len = sizeof dst;
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) != 0) {
      if (errno == ENOENT) goto not_redirected;
      return negative_errno(env, errno);
    }
    // The socket's own address and port: not redirected if the original destination is them.
    const struct sockaddr_in *local4 = (const struct sockaddr_in *)&local;
    const struct in_addr *own = mapped ? (const struct in_addr *)&local6->sin6_addr.s6_addr[12]
                                       : &local4->sin_addr;
    const in_port_t own_port = mapped ? local6->sin6_port : local4->sin_port;
    if (dst.sin_port == own_port && dst.sin_addr.s_addr == own->s_addr) goto not_redirected;
    inet_ntop(AF_INET, &dst.sin_addr, text, sizeof text);
    out[0] = ntohs(dst.sin_port);
    out[1] = 4;
  } else if (local.ss_family == AF_INET6) {
    struct sockaddr_in6 dst;
    socklen_t len = sizeof dst;
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len) != 0) {
      if (errno == ENOENT) goto not_redirected;
      return negative_errno(env, errno);
    }
    if (dst.sin6_port == local6->sin6_port &&
        memcmp(&dst.sin6_addr, &local6->sin6_addr, sizeof dst.sin6_addr) == 0) {
      goto not_redirected;
    }
    inet_ntop(AF_INET6, &dst.sin6_addr, text, sizeof text);
    out[0] = ntohs(dst.sin6_port);
    out[1] = 6;
  } else {
    return negative_errno(env, EAFNOSUPPORT);
  }
  napi_create_string_latin1(env, text, NAPI_AUTO_LENGTH, &result);
  return result;

not_redirected:
  napi_get_null(env, &result);
  return result;
}

static napi_value trim_memory(napi_env env, napi_callback_info info) {
  (void)info;
  int released = 0;
#ifdef __GLIBC__
  released = malloc_trim(0);
#endif
  napi_value result;
  napi_get_boolean(env, released != 0, &result);
  return result;
}

static napi_value heap_free_bytes(napi_env env, napi_callback_info info) {
  (void)info;
  double free_bytes = -1;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  free_bytes = (double)mallinfo2().fordblks;
#endif
  napi_value result;
  napi_create_double(env, free_bytes, &result);
  return result;
}

// dropPages(start, length): madvise(MADV_DONTNEED) on that range of this process's address space:
// its pages leave the process's resident set (a clean file-backed page stays in the page cache,
// and comes back on the next touch). 0, or a negative errno. The caller gives only ranges of
// read-only file mappings that hold no private copy of a page: for those, nothing is lost.
static napi_value drop_pages(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  double start, length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_double(env, argv[0], &start) != napi_ok ||
      napi_get_value_double(env, argv[1], &length) != napi_ok || start < 0 || length <= 0) {
    napi_throw_type_error(env, NULL, "dropPages(start, length): two positive numbers expected");
    return NULL;
  }
  napi_value result;
  int rc = madvise((void *)(uintptr_t)start, (size_t)length, MADV_DONTNEED);
  napi_create_int32(env, rc == 0 ? 0 : -errno, &result);
  return result;
}

// setKeepalive(fd, idle, interval, probes): SO_KEEPALIVE on, and each of TCP_KEEPIDLE,
// TCP_KEEPINTVL (seconds) and TCP_KEEPCNT that is above 0 (0 leaves the system's). 0, or a
// negative errno. keepaliveOf(fd): [on, idle, interval, probes] as the kernel has them.
static napi_value set_keepalive(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t v[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) {
    napi_throw_type_error(env, NULL, "setKeepalive(fd, idle, interval, probes): four numbers");
    return NULL;
  }
  for (int i = 0; i < 4; i++) {
    if (napi_get_value_int32(env, argv[i], &v[i]) != napi_ok || v[i] < 0) {
      napi_throw_type_error(env, NULL, "setKeepalive(fd, idle, interval, probes): four numbers");
      return NULL;
    }
  }
  const int on = 1;
  int rc = setsockopt(v[0], SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  if (rc == 0 && v[1] > 0) rc = setsockopt(v[0], IPPROTO_TCP, TCP_KEEPIDLE, &v[1], sizeof v[1]);
  if (rc == 0 && v[2] > 0) rc = setsockopt(v[0], IPPROTO_TCP, TCP_KEEPINTVL, &v[2], sizeof v[2]);
  if (rc == 0 && v[3] > 0) rc = setsockopt(v[0], IPPROTO_TCP, TCP_KEEPCNT, &v[3], sizeof v[3]);
  return negative_errno(env, rc == 0 ? 0 : errno);
}

static napi_value keepalive_of(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "keepaliveOf(fd): a number expected");
    return NULL;
  }
  int values[4];
  socklen_t len = sizeof(int);
  const int levels[4] = {SOL_SOCKET, IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP};
  const int names[4] = {SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT};
  napi_value result, item;
  napi_create_array_with_length(env, 4, &result);
  for (int i = 0; i < 4; i++) {
    len = sizeof(int);
    if (getsockopt(fd, levels[i], names[i], &values[i], &len) != 0) return negative_errno(env, errno);
    napi_create_int32(env, values[i], &item);
    napi_set_element(env, result, (uint32_t)i, item);
  }
  return result;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  if (napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "originalDst", fn) != napi_ok ||
      napi_create_function(env, "trimMemory", NAPI_AUTO_LENGTH, trim_memory, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "trimMemory", fn) != napi_ok ||
      napi_create_function(env, "heapFreeBytes", NAPI_AUTO_LENGTH, heap_free_bytes, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "heapFreeBytes", fn) != napi_ok ||
      napi_create_function(env, "dropPages", NAPI_AUTO_LENGTH, drop_pages, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "dropPages", fn) != napi_ok ||
      napi_create_function(env, "setKeepalive", NAPI_AUTO_LENGTH, set_keepalive, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "setKeepalive", fn) != napi_ok ||
      napi_create_function(env, "keepaliveOf", NAPI_AUTO_LENGTH, keepalive_of, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "keepaliveOf", fn) != napi_ok) {
    return NULL;
  }
  return exports;
}
