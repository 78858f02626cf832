/* Minimal vfio-user client transport; see vfio_user_client.h. */
#define _GNU_SOURCE
#include "vfio_user_client.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define HDR_SIZE 16u
#define MAX_RX_FDS 16
#define MAX_MSG (64u * 1024u)

struct vfu_hdr {
  uint16_t msg_id;
  uint16_t command;
  uint32_t msg_size;
  uint32_t flags;
  uint32_t error;
};

static int fail(struct vfu_client *c, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->last_error, sizeof c->last_error, fmt, ap);
  va_end(ap);
  return err > 0 ? -err : (err ? err : -EIO);
}

int vfu_connect(struct vfu_client *c, const char *socket_path) {
  memset(c, 0, sizeof *c);
  c->sock = -1;
  c->max_msg_fds = 1;
  c->max_data_xfer_size = 1u << 20;
  c->reply_timeout_ms = 5000;
  c->next_id = 1;
  c->rx = malloc(MAX_MSG);
  if (!c->rx) return fail(c, ENOMEM, "out of memory");
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(socket_path) >= sizeof sa.sun_path) return fail(c, ENAMETOOLONG, "socket path too long");
  strcpy(sa.sun_path, socket_path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail(c, errno, "socket: %s", strerror(errno));
  if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(s);
    return fail(c, e, "connect %s: %s", socket_path, strerror(e));
  }
  /* A server that stops reading must not block a send forever (e.g. posted doorbells filling the socket buffer). */
  struct timeval tv = {.tv_sec = c->reply_timeout_ms / 1000, .tv_usec = (c->reply_timeout_ms % 1000) * 1000};
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  c->sock = s;
  return 0;
}

int vfu_find_mmap_area(const struct vfu_region_info *region, uint64_t offset, uint64_t len, uint64_t *area_offset,
                       uint64_t *area_size) {
  if (!(region->flags & VFU_REGION_MMAP) || region->fd < 0) return -1;
  if (offset > region->size || len > region->size - offset) return -1;
  if (region->nr_areas == 0) {
    *area_offset = 0;
    *area_size = region->size;
    return 0;
  }
  for (uint32_t i = 0; i < region->nr_areas; i++) {
    const struct vfu_sparse_area *a = &region->areas[i];
    /* Areas come from the server: each must lie inside the region (no wrap-around) to be mapped at all. */
    if (a->offset > region->size || a->size > region->size - a->offset) continue;
    if (a->offset <= offset && a->offset + a->size >= offset + len) {
      *area_offset = a->offset;
      *area_size = a->size;
      return 0;
    }
  }
  return -1;
}

/* Dword-aligned config read, so any server access granularity works. */
static int cfg_read(struct vfu_client *c, uint32_t off, uint32_t size, uint32_t *v) {
  uint32_t dw;
  int r = vfu_region_read(c, VFU_PCI_CONFIG_REGION, off & ~3u, &dw, 4);
  if (r) return r;
  dw >>= (off & 3u) * 8u;
  *v = size == 4 ? dw : dw & ((1u << (size * 8u)) - 1u);
  return 0;
}

int vfu_pci_enable_bus_master(struct vfu_client *c) {
  uint32_t dw;
  int r = vfu_region_read(c, VFU_PCI_CONFIG_REGION, 0x04, &dw, 4); /* dword: any server access granularity works */
  if (r) return r;
  uint16_t cmd = (uint16_t)dw, want = (uint16_t)(cmd | 0x6u);
  return want == cmd ? 0 : vfu_region_write(c, VFU_PCI_CONFIG_REGION, 0x04, &want, 2);
}

int vfu_pci_enable_msix(struct vfu_client *c) {
  uint32_t status, ptr;
  int r = cfg_read(c, 0x06, 2, &status);
  if (r) return r;
  if (!(status & 0x10u)) return fail(c, ENOENT, "no PCI capability list");
  if ((r = cfg_read(c, 0x34, 1, &ptr))) return r;
  for (int guard = 0; ptr >= 0x40 && ptr < 0x100 && guard < 48; guard++) {
    uint32_t hdr;
    if ((r = cfg_read(c, ptr & ~3u, 2, &hdr))) return r;
    if ((hdr & 0xffu) == 0x11u) {
      uint32_t mc;
      if ((r = cfg_read(c, ptr + 2, 2, &mc))) return r;
      uint16_t nmc = (uint16_t)((mc | 0x8000u) & ~0x4000u); /* Enable, Function Mask off */
      return vfu_region_write(c, VFU_PCI_CONFIG_REGION, ptr + 2, &nmc, 2);
    }
    ptr = (hdr >> 8) & 0xfcu;
  }
  return fail(c, ENOENT, "no MSI-X capability");
}

int vfu_peer_pid(struct vfu_client *c) {
  struct ucred cr;
  socklen_t len = sizeof cr;
  if (getsockopt(c->sock, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) return -1;
  return cr.pid;
}

void vfu_close(struct vfu_client *c) {
  if (c->sock >= 0) close(c->sock);
  c->sock = -1;
  free(c->rx);
  c->rx = NULL;
}

/* Write a whole message (header + up to two payload parts), optionally with fds on the first byte. */
static int send_msg(struct vfu_client *c, const struct vfu_hdr *h, const void *p1, size_t l1, const void *p2,
                    size_t l2, const int *fds, int nfds) {
  struct iovec iov[3] = {{(void *)h, HDR_SIZE}, {(void *)p1, l1}, {(void *)p2, l2}};
  int niov = l2 ? 3 : (l1 ? 2 : 1);
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_RX_FDS)];
    struct cmsghdr align;
  } cm;
  struct msghdr mh = {.msg_iov = iov, .msg_iovlen = niov};
  if (nfds > 0) {
    if (nfds > MAX_RX_FDS) return fail(c, EINVAL, "too many fds");
    memset(&cm, 0, sizeof cm);
    mh.msg_control = cm.buf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&mh);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }
  size_t total = HDR_SIZE + l1 + l2;
  size_t done = 0;
  while (done < total) {
    ssize_t n = sendmsg(c->sock, &mh, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return fail(c, ETIMEDOUT, "server has not read from the socket for %d ms", c->reply_timeout_ms);
      return fail(c, errno, "sendmsg: %s", strerror(errno));
    }
    done += (size_t)n;
    if (done >= total) break;
    /* Partial write: advance the iovecs; fds have already gone with the first byte. */
    mh.msg_control = NULL;
    mh.msg_controllen = 0;
    size_t skip = (size_t)n;
    while (skip > 0 && mh.msg_iovlen > 0) {
      if (skip >= mh.msg_iov[0].iov_len) {
        skip -= mh.msg_iov[0].iov_len;
        mh.msg_iov++;
        mh.msg_iovlen--;
      } else {
        mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + skip;
        mh.msg_iov[0].iov_len -= skip;
        skip = 0;
      }
    }
  }
  c->msgs_sent++;
  return 0;
}

/* Read exactly len bytes, collecting any SCM_RIGHTS fds. */
static int recv_exact(struct vfu_client *c, void *buf, size_t len, int *fds, int *nfds, int max_fds) {
  size_t got = 0;
  while (got < len) {
    struct pollfd pfd = {.fd = c->sock, .events = POLLIN};
    int pr = poll(&pfd, 1, c->reply_timeout_ms);
    if (pr < 0) {
      if (errno == EINTR) continue;
      return fail(c, errno, "poll: %s", strerror(errno));
    }
    if (pr == 0) return fail(c, ETIMEDOUT, "no reply from server within %d ms", c->reply_timeout_ms);
    union {
      char buf[CMSG_SPACE(sizeof(int) * MAX_RX_FDS)];
      struct cmsghdr align;
    } cm;
    struct iovec iov = {(char *)buf + got, len - got};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
    ssize_t n = recvmsg(c->sock, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(c, errno, "recvmsg: %s", strerror(errno));
    }
    if (n == 0) return fail(c, ECONNRESET, "server closed the connection");
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&mh); cmsg; cmsg = CMSG_NXTHDR(&mh, cmsg)) {
      if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
      int cnt = (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      int *in = (int *)CMSG_DATA(cmsg);
      for (int i = 0; i < cnt; i++) {
        if (fds && nfds && *nfds < max_fds)
          fds[(*nfds)++] = in[i];
        else
          close(in[i]);
      }
    }
    got += (size_t)n;
  }
  return 0;
}

/*
 * Send a command and wait for its reply. The reply payload (after the header) is copied into `reply` (up to
 * reply_cap bytes; *reply_len gets the full payload size). Received fds go to rfds (caller closes them).
 */
static int transact(struct vfu_client *c, uint16_t cmd, const void *p1, size_t l1, const void *p2, size_t l2,
                    const int *fds, int nfds, void *reply, size_t reply_cap, size_t *reply_len, int *rfds,
                    int *nrfds, int max_rfds) {
  struct vfu_hdr h = {.msg_id = c->next_id++, .command = cmd, .msg_size = (uint32_t)(HDR_SIZE + l1 + l2),
                      .flags = VFU_F_TYPE_COMMAND, .error = 0};
  if (nrfds) *nrfds = 0;
  int r = send_msg(c, &h, p1, l1, p2, l2, fds, nfds);
  if (r) return r;
  for (;;) {
    struct vfu_hdr rh;
    int tmpfds[MAX_RX_FDS];
    int ntmp = 0;
    r = recv_exact(c, &rh, HDR_SIZE, tmpfds, &ntmp, MAX_RX_FDS);
    if (r) return r;
    if (rh.msg_size < HDR_SIZE || rh.msg_size > MAX_MSG + HDR_SIZE)
      return fail(c, EPROTO, "bad msg_size %u in message (cmd %u id %u)", rh.msg_size, rh.command, rh.msg_id);
    size_t plen = rh.msg_size - HDR_SIZE;
    r = recv_exact(c, c->rx, plen, tmpfds, &ntmp, MAX_RX_FDS);
    if (r) return r;
    uint32_t type = rh.flags & VFU_F_TYPE_MASK;
    if (type == VFU_F_TYPE_COMMAND) {
      /* Server-to-client request (DMA_READ/WRITE): we share all memory, so refuse. */
      for (int i = 0; i < ntmp; i++) close(tmpfds[i]);
      c->server_requests++;
      if (!(rh.flags & VFU_F_NO_REPLY)) {
        struct vfu_hdr eh = {.msg_id = rh.msg_id, .command = rh.command, .msg_size = HDR_SIZE,
                             .flags = VFU_F_TYPE_REPLY | VFU_F_ERROR, .error = ENOTSUP};
        send_msg(c, &eh, NULL, 0, NULL, 0, NULL, 0);
      }
      continue;
    }
    if (rh.msg_id != h.msg_id || rh.command != cmd) {
      for (int i = 0; i < ntmp; i++) close(tmpfds[i]);
      c->stray_replies++;
      if (c->stray_replies <= 5)
        fprintf(stderr, "vfio-user: discarding unexpected reply id %u cmd %u flags 0x%x error %u (waiting for id %u cmd %u)\n",
                rh.msg_id, rh.command, rh.flags, rh.error, h.msg_id, cmd);
      continue;
    }
    if (rh.flags & VFU_F_ERROR) {
      for (int i = 0; i < ntmp; i++) close(tmpfds[i]);
      return fail(c, rh.error ? (int)rh.error : EIO, "server replied to command %u with error %u (%s)", cmd, rh.error,
                  strerror((int)rh.error));
    }
    if (reply_len) *reply_len = plen;
    if (reply) memcpy(reply, c->rx, plen < reply_cap ? plen : reply_cap);
    for (int i = 0; i < ntmp; i++) {
      if (rfds && nrfds && *nrfds < max_rfds)
        rfds[(*nrfds)++] = tmpfds[i];
      else
        close(tmpfds[i]);
    }
    return 0;
  }
}

/* Find an unsigned integer value for "key" anywhere in a JSON text (good enough for the flat capabilities object). */
static int json_uint(const char *json, const char *key, uint64_t *out) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *p = strstr(json, pat);
  if (!p) return -1;
  p += strlen(pat);
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ':') p++;
  if (*p < '0' || *p > '9') return -1;
  *out = strtoull(p, NULL, 10);
  return 0;
}

int vfu_negotiate_version(struct vfu_client *c) {
  static const char caps[] = "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576}}";
  uint16_t ver[2] = {0, 0};
  char reply[1100];
  size_t rlen = 0;
  int r = transact(c, VFU_CMD_VERSION, ver, sizeof ver, caps, sizeof caps, NULL, 0, reply, sizeof reply - 1, &rlen,
                   NULL, NULL, 0);
  if (r) return r;
  if (rlen < 4) return fail(c, EPROTO, "VERSION reply too short (%zu bytes)", rlen);
  memcpy(&c->server_major, reply, 2);
  memcpy(&c->server_minor, reply + 2, 2);
  if (c->server_major != 0) return fail(c, EPROTO, "server speaks vfio-user %u.%u, we need 0.x", c->server_major, c->server_minor);
  /* rlen is the server's full payload size; only what fit in `reply` was copied, and server_caps is smaller still. */
  size_t jl = (rlen < sizeof reply - 1 ? rlen : sizeof reply - 1) - 4;
  if (jl > sizeof c->server_caps - 1) jl = sizeof c->server_caps - 1;
  memcpy(c->server_caps, reply + 4, jl);
  c->server_caps[jl] = 0;
  uint64_t v;
  if (json_uint(c->server_caps, "max_msg_fds", &v) == 0 && v > 0) c->max_msg_fds = (uint32_t)v;
  if (json_uint(c->server_caps, "max_data_xfer_size", &v) == 0 && v > 0) c->max_data_xfer_size = v;
  return 0;
}

int vfu_device_get_info(struct vfu_client *c) {
  uint32_t req[4] = {16, 0, 0, 0}, rep[4] = {0};
  size_t rlen = 0;
  int r = transact(c, VFU_CMD_DEVICE_GET_INFO, req, sizeof req, NULL, 0, NULL, 0, rep, sizeof rep, &rlen, NULL, NULL, 0);
  if (r) return r;
  if (rlen < 16) return fail(c, EPROTO, "DEVICE_GET_INFO reply too short (%zu)", rlen);
  c->dev_flags = rep[1];
  c->num_regions = rep[2];
  c->num_irqs = rep[3];
  return 0;
}

int vfu_get_region_info(struct vfu_client *c, uint32_t index, struct vfu_region_info *out) {
  memset(out, 0, sizeof *out);
  out->fd = -1;
  uint8_t req[32] = {0};
  uint32_t argsz = 512;
  memcpy(req, &argsz, 4);
  memcpy(req + 8, &index, 4);
  uint8_t rep[512];
  size_t rlen = 0;
  int fds[4], nfds = 0;
  int r = transact(c, VFU_CMD_DEVICE_GET_REGION_INFO, req, sizeof req, NULL, 0, NULL, 0, rep, sizeof rep, &rlen, fds,
                   &nfds, 4);
  if (r) return r;
  for (int i = 1; i < nfds; i++) close(fds[i]);
  if (rlen < 32) {
    if (nfds > 0) close(fds[0]);
    return fail(c, EPROTO, "REGION_INFO reply too short (%zu)", rlen);
  }
  if (nfds > 0) out->fd = fds[0];
  if (rlen > sizeof rep) rlen = sizeof rep;
  uint32_t rargsz, cap_off;
  memcpy(&rargsz, rep, 4);
  memcpy(&out->flags, rep + 4, 4);
  memcpy(&out->index, rep + 8, 4);
  memcpy(&cap_off, rep + 12, 4);
  memcpy(&out->size, rep + 16, 8);
  memcpy(&out->offset, rep + 24, 8);
  /* Walk the capability chain (offsets relative to the start of the region-info struct). */
  int guard = 0;
  /* cap_off and next come from the server: compare in size_t so a value near 4 GiB cannot wrap past the check. */
  while ((out->flags & VFU_REGION_CAPS) && cap_off >= 32 && (size_t)cap_off + 8 <= rlen && guard++ < 16) {
    uint16_t id, ver;
    uint32_t next;
    memcpy(&id, rep + cap_off, 2);
    memcpy(&ver, rep + cap_off + 2, 2);
    memcpy(&next, rep + cap_off + 4, 4);
    if (id == VFU_CAP_SPARSE_MMAP && (size_t)cap_off + 16 <= rlen) {
      uint32_t nr;
      memcpy(&nr, rep + cap_off + 8, 4);
      for (uint32_t i = 0; i < nr && out->nr_areas < VFU_MAX_SPARSE_AREAS; i++) {
        size_t a = (size_t)cap_off + 16 + (size_t)i * 16;
        if (a + 16 > rlen) break;
        memcpy(&out->areas[out->nr_areas].offset, rep + a, 8);
        memcpy(&out->areas[out->nr_areas].size, rep + a + 8, 8);
        out->nr_areas++;
      }
    }
    if (next == 0 || next == cap_off) break;
    cap_off = next;
  }
  (void)rargsz;
  return 0;
}

int vfu_get_irq_info(struct vfu_client *c, uint32_t index, uint32_t *flags, uint32_t *count) {
  uint32_t req[4] = {16, 0, index, 0}, rep[4] = {0};
  size_t rlen = 0;
  int r = transact(c, VFU_CMD_DEVICE_GET_IRQ_INFO, req, sizeof req, NULL, 0, NULL, 0, rep, sizeof rep, &rlen, NULL, NULL, 0);
  if (r) return r;
  if (rlen < 16) return fail(c, EPROTO, "GET_IRQ_INFO reply too short (%zu)", rlen);
  if (flags) *flags = rep[1];
  if (count) *count = rep[3];
  return 0;
}

int vfu_dma_map(struct vfu_client *c, int fd, uint64_t fd_offset, uint64_t iova, uint64_t size, uint32_t prot) {
  uint8_t req[32];
  uint32_t argsz = 32;
  memcpy(req, &argsz, 4);
  memcpy(req + 4, &prot, 4);
  memcpy(req + 8, &fd_offset, 8);
  memcpy(req + 16, &iova, 8);
  memcpy(req + 24, &size, 8);
  return transact(c, VFU_CMD_DMA_MAP, req, sizeof req, NULL, 0, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0, NULL, 0, NULL,
                  NULL, NULL, 0);
}

int vfu_dma_unmap(struct vfu_client *c, uint64_t iova, uint64_t size) {
  uint8_t req[24], rep[24];
  uint32_t argsz = 24, flags = 0;
  memcpy(req, &argsz, 4);
  memcpy(req + 4, &flags, 4);
  memcpy(req + 8, &iova, 8);
  memcpy(req + 16, &size, 8);
  size_t rlen = 0;
  return transact(c, VFU_CMD_DMA_UNMAP, req, sizeof req, NULL, 0, NULL, 0, rep, sizeof rep, &rlen, NULL, NULL, 0);
}

int vfu_set_irqs_eventfd(struct vfu_client *c, uint32_t index, uint32_t start, uint32_t count, const int *fds) {
  uint32_t per = c->max_msg_fds ? c->max_msg_fds : 1;
  if (per > MAX_RX_FDS) per = MAX_RX_FDS;
  for (uint32_t done = 0; done < count;) {
    uint32_t n = count - done < per ? count - done : per;
    uint32_t req[5] = {20, VFU_IRQ_DATA_EVENTFD | VFU_IRQ_ACTION_TRIGGER, index, start + done, n};
    int r = transact(c, VFU_CMD_DEVICE_SET_IRQS, req, sizeof req, NULL, 0, fds + done, (int)n, NULL, 0, NULL, NULL,
                     NULL, 0);
    if (r) return r;
    done += n;
  }
  return 0;
}

int vfu_set_irqs_disable(struct vfu_client *c, uint32_t index) {
  uint32_t req[5] = {20, VFU_IRQ_DATA_NONE | VFU_IRQ_ACTION_TRIGGER, index, 0, 0};
  return transact(c, VFU_CMD_DEVICE_SET_IRQS, req, sizeof req, NULL, 0, NULL, 0, NULL, 0, NULL, NULL, NULL, 0);
}

int vfu_region_read(struct vfu_client *c, uint32_t region, uint64_t offset, void *buf, uint32_t count) {
  uint8_t req[16];
  memcpy(req, &offset, 8);
  memcpy(req + 8, &region, 4);
  memcpy(req + 12, &count, 4);
  size_t rlen = 0;
  if (count > MAX_MSG - 16) return fail(c, EINVAL, "read too large");
  /* The reply payload stays in c->rx: no copy through a second buffer. */
  int r = transact(c, VFU_CMD_REGION_READ, req, sizeof req, NULL, 0, NULL, 0, NULL, 0, &rlen, NULL, NULL, 0);
  if (r) return r;
  uint32_t rcount = 0;
  if (rlen >= 16) memcpy(&rcount, c->rx + 12, 4);
  if (rlen < 16 + (size_t)count || rcount != count)
    return fail(c, EPROTO, "REGION_READ reply: %zu bytes, count %u (wanted %u at region %u offset 0x%llx)", rlen,
                rcount, count, region, (unsigned long long)offset);
  memcpy(buf, c->rx + 16, count);
  return 0;
}

int vfu_region_write(struct vfu_client *c, uint32_t region, uint64_t offset, const void *buf, uint32_t count) {
  uint8_t req[16], rep[16];
  memcpy(req, &offset, 8);
  memcpy(req + 8, &region, 4);
  memcpy(req + 12, &count, 4);
  size_t rlen = 0;
  return transact(c, VFU_CMD_REGION_WRITE, req, sizeof req, buf, count, NULL, 0, rep, sizeof rep, &rlen, NULL, NULL, 0);
}

int vfu_region_write_posted(struct vfu_client *c, uint32_t region, uint64_t offset, const void *buf, uint32_t count) {
  if (count > 8) return fail(c, EINVAL, "posted write too large");
  struct vfu_hdr h = {.msg_id = c->next_id++, .command = VFU_CMD_REGION_WRITE, .msg_size = HDR_SIZE + 16 + count,
                      .flags = VFU_F_TYPE_COMMAND | VFU_F_NO_REPLY, .error = 0};
  uint8_t req[16];
  memcpy(req, &offset, 8);
  memcpy(req + 8, &region, 4);
  memcpy(req + 12, &count, 4);
  int r = send_msg(c, &h, req, sizeof req, buf, count, NULL, 0);
  if (!r) c->posted_writes++;
  return r;
}

int vfu_device_reset(struct vfu_client *c) {
  return transact(c, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL, NULL, NULL, 0);
}

int vfu_drain_unsolicited(struct vfu_client *c) {
  int drained = 0;
  for (;;) {
    struct pollfd pfd = {.fd = c->sock, .events = POLLIN};
    int pr = poll(&pfd, 1, 0);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return drained;
    if (pfd.revents & (POLLHUP | POLLERR) && !(pfd.revents & POLLIN)) return fail(c, ECONNRESET, "server hung up");
    struct vfu_hdr rh;
    int fds[MAX_RX_FDS], nfds = 0;
    int r = recv_exact(c, &rh, HDR_SIZE, fds, &nfds, MAX_RX_FDS);
    if (r) return r;
    if (rh.msg_size < HDR_SIZE || rh.msg_size > MAX_MSG + HDR_SIZE) return fail(c, EPROTO, "bad msg_size %u", rh.msg_size);
    r = recv_exact(c, c->rx, rh.msg_size - HDR_SIZE, fds, &nfds, MAX_RX_FDS);
    if (r) return r;
    for (int i = 0; i < nfds; i++) close(fds[i]);
    if ((rh.flags & VFU_F_TYPE_MASK) == VFU_F_TYPE_COMMAND) {
      c->server_requests++;
      if (!(rh.flags & VFU_F_NO_REPLY)) {
        struct vfu_hdr eh = {.msg_id = rh.msg_id, .command = rh.command, .msg_size = HDR_SIZE,
                             .flags = VFU_F_TYPE_REPLY | VFU_F_ERROR, .error = ENOTSUP};
        send_msg(c, &eh, NULL, 0, NULL, 0, NULL, 0);
      }
    } else {
      c->stray_replies++;
      if (c->stray_replies <= 5)
        fprintf(stderr, "vfio-user: discarding unsolicited reply id %u cmd %u flags 0x%x error %u\n", rh.msg_id,
                rh.command, rh.flags, rh.error);
    }
    drained++;
  }
}
