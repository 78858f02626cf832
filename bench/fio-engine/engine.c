/*
 * vfiod-fio.so: fio external I/O engine that drives an NVMe controller from userspace, over vfio-user (a `vfiod
 * serve` socket) or VFIO (a PCI function on vfio-pci). docs/fio-engine.md has the options and limits.
 *
 *   ioengine=external:bench/fio-engine/build/vfiod-fio.so  thread=1
 *   vfiod_transport=vfio-user vfiod_socket=/tmp/nvme0.sock      or      vfiod_transport=vfio vfiod_bdf=0000:01:00.1
 *
 * Structure: one controller connection per target per process (struct shared_ctrl), shared and refcounted by the
 * jobs (threads) using it; admin commands, queue ids and IOVA space are handed out under its lock. Each job owns an
 * I/O queue pair, its ring memory and its I/O buffers (allocated here through iomem_alloc so they are DMA-mapped
 * once); the I/O path (queue/commit/getevents) touches only the job's own state. Completions are polled.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "fio.h"
#include "optgroup.h"

#include "engine.h"

#ifndef VFIOD_FIO_VERSION
#error "build with bench/fio-engine/build.sh (defines VFIOD_FIO_VERSION)"
#endif

/*
 * DMA regions go from 4 GiB up: below that, IOMMUs reserve ranges (the x86 MSI window at 0xfee00000, RMRRs) that a
 * type1 map would be refused in, and a zero PRP can never be valid. NVMe controllers do 64-bit DMA.
 */
#define FIRST_IOVA (1ull << 32)
#define ADMIN_QSIZE 32
#define MAX_IO_QUEUES 64 /* asked for with Set Features; the controller may grant fewer */
#define PAGE 4096u
#define REAP_BATCH 64
#define POLL_SPINS 4096 /* empty CQ checks between clock reads (polled completions) */
#define IRQ_SPINS 64    /* empty CQ checks before sleeping on the eventfd (interrupt completions) */

/* ---------------- options ---------------- */

struct vfiod_options {
  void *pad; /* fio: an option's offset must not be 0 */
  char *transport;
  char *socket;
  char *bdf;
  unsigned int nsid;
  unsigned int qsize;
  char *doorbell;
  unsigned int timeout_ms;
  char *completion;
};

static struct fio_option options[] = {
    {
        .name = "vfiod_transport",
        .lname = "vfiod transport",
        .type = FIO_OPT_STR_STORE,
        .off1 = offsetof(struct vfiod_options, transport),
        .help = "How to reach the NVMe controller: vfio-user (vfiod_socket=) or vfio (vfiod_bdf=)",
        .def = "vfio-user",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "vfiod_socket",
        .lname = "vfiod vfio-user socket",
        .type = FIO_OPT_STR_STORE,
        .off1 = offsetof(struct vfiod_options, socket),
        .help = "vfio-user socket of a `vfiod serve` controller (vfiod_transport=vfio-user)",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "vfiod_bdf",
        .lname = "vfiod PCI address",
        .type = FIO_OPT_STR_STORE,
        .off1 = offsetof(struct vfiod_options, bdf),
        .help = "PCI address (0000:bb:dd.f) of an NVMe controller bound to vfio-pci (vfiod_transport=vfio)",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "vfiod_nsid",
        .lname = "vfiod namespace id",
        .type = FIO_OPT_INT,
        .off1 = offsetof(struct vfiod_options, nsid),
        .help = "Namespace to do I/O to",
        .def = "1",
        .minval = 1,
        .maxval = 0xfffffffe,
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "vfiod_qsize",
        .lname = "vfiod queue entries",
        .type = FIO_OPT_INT,
        .off1 = offsetof(struct vfiod_options, qsize),
        .help = "Entries of the job's I/O submission/completion queues (0: iodepth+1)",
        .def = "0",
        .minval = 0,
        .maxval = 65536,
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "vfiod_doorbell",
        .lname = "vfiod doorbell mode",
        .type = FIO_OPT_STR_STORE,
        .off1 = offsetof(struct vfiod_options, doorbell),
        .help = "vfio-user doorbells: auto (mmap when the server offers it), mmap, trapped (posted REGION_WRITEs)",
        .def = "auto",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "vfiod_timeout_ms",
        .lname = "vfiod completion timeout",
        .type = FIO_OPT_INT,
        .off1 = offsetof(struct vfiod_options, timeout_ms),
        .help = "Fail the job when no completion arrives for this long while I/O is outstanding",
        .def = "30000",
        .minval = 100,
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "vfiod_completion",
        .lname = "vfiod completion mode",
        .type = FIO_OPT_STR_STORE,
        .off1 = offsetof(struct vfiod_options, completion),
        .help = "poll: spin on the CQ; irq: MSI-X interrupt to an eventfd, sleep while waiting (vfio-user only)",
        .def = "poll",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = NULL,
    },
};

/* ---------------- shared controllers ---------------- */

struct shared_ctrl {
  struct shared_ctrl *next;
  char key[300];
  int refs;
  pthread_mutex_t lock; /* admin queue, queue ids, IOVA allocation */
  struct vfiod_xport *x;
  struct nvme_ctrl ctrl;
  struct vfiod_dma_region admin_region;
  struct nvme_dma_mem admin_mem;
  uint64_t next_iova;
  uint16_t nr_io_queues;
  uint8_t qid_busy[MAX_IO_QUEUES + 1];
  int dead; /* transport or controller failed: tear down locally, without talking to the device */
};

/* Any job thread may find the controller failed; the others read the flag without the lock. */
static int ctrl_dead(struct shared_ctrl *sc) { return __atomic_load_n(&sc->dead, __ATOMIC_ACQUIRE); }
static void ctrl_mark_dead(struct shared_ctrl *sc) { __atomic_store_n(&sc->dead, 1, __ATOMIC_RELEASE); }

static pthread_mutex_t g_ctrls_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shared_ctrl *g_ctrls;

/* Tear down (any stage of) a controller connection: shutdown, disable, unmap, close. Reports, never fails. */
static void ctrl_destroy(struct shared_ctrl *sc, int enabled) {
  char err[VFIOD_ERR_LEN];
  if (sc->admin_region.mapped && !ctrl_dead(sc)) {
    if (enabled && nvme_ctrl_shutdown(&sc->ctrl))
      log_err("vfiod: %s %s: controller shutdown: %s\n", sc->x->kind, sc->x->target, sc->ctrl.last_error);
    /* No DMA after this, before the mapping goes; also after a failed bring-up (it may have enabled late). */
    sc->x->ops.write32(sc->x->ops.ctx, NVME_REG_CC, 0);
  }
  if (sc->x) {
    if (ctrl_dead(sc)) sc->admin_region.mapped = 0; /* the server is gone (vfio: closing the container unmaps) */
    if (sc->admin_region.mapped && sc->x->dma_unmap(sc->x, &sc->admin_region, err, sizeof err))
      log_err("vfiod: %s %s: %s\n", sc->x->kind, sc->x->target, err);
    sc->x->destroy(sc->x);
  }
  vfiod_dma_region_free(&sc->admin_region);
  pthread_mutex_destroy(&sc->lock);
  free(sc);
}

/* Hand out IOVA space (never reused: 64 bits are plenty for a run). Caller holds sc->lock. */
static uint64_t ctrl_take_iova(struct shared_ctrl *sc, size_t size) {
  uint64_t iova = sc->next_iova;
  sc->next_iova += (size + (2u << 20) - 1) & ~(uint64_t)((2u << 20) - 1);
  return iova;
}

/* Give an I/O queue id back after a failed queue setup. */
static void ctrl_put_qid(struct shared_ctrl *sc, uint16_t qid) {
  pthread_mutex_lock(&sc->lock);
  sc->qid_busy[qid] = 0;
  pthread_mutex_unlock(&sc->lock);
}

static struct shared_ctrl *ctrl_open(const struct vfiod_options *o, const char *key, char *err, size_t errlen) {
  struct shared_ctrl *sc = calloc(1, sizeof *sc);
  if (!sc) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&sc->lock, NULL);
  snprintf(sc->key, sizeof sc->key, "%s", key);
  sc->admin_region.fd = -1;
  sc->x = !strcmp(o->transport, "vfio") ? vfiod_xport_vfio_open(o->bdf, err, errlen)
                                        : vfiod_xport_vfio_user_open(o->socket, o->doorbell, err, errlen);
  if (!sc->x) {
    ctrl_destroy(sc, 0);
    return NULL;
  }
  struct vfiod_xport *x = sc->x;
  char detail[VFIOD_ERR_LEN];
  sc->next_iova = FIRST_IOVA;
  if (vfiod_dma_region_alloc(&sc->admin_region, 16 * PAGE, "vfiod-fio-admin", detail, sizeof detail) ||
      (sc->admin_region.iova = ctrl_take_iova(sc, sc->admin_region.size),
       x->dma_map(x, &sc->admin_region, detail, sizeof detail))) {
    snprintf(err, errlen, "%s %s: admin queue memory: %s", x->kind, x->target, detail);
    ctrl_destroy(sc, 0);
    return NULL;
  }
  sc->admin_mem = (struct nvme_dma_mem){.vaddr = sc->admin_region.vaddr, .iova = sc->admin_region.iova,
                                        .size = sc->admin_region.size};
  const char *step = "controller reset/enable";
  int enabled = 0;
  if (nvme_ctrl_init(&sc->ctrl, &x->ops, &sc->admin_mem, ADMIN_QSIZE)) goto fail;
  enabled = 1;
  step = "Identify Controller";
  if (nvme_identify_ctrl(&sc->ctrl)) goto fail;
  step = "Set Features (Number of Queues)";
  uint16_t nsq = 0, ncq = 0;
  if (nvme_set_num_queues(&sc->ctrl, MAX_IO_QUEUES, MAX_IO_QUEUES, &nsq, &ncq)) goto fail;
  sc->nr_io_queues = nsq < ncq ? nsq : ncq;
  if (sc->nr_io_queues > MAX_IO_QUEUES) sc->nr_io_queues = MAX_IO_QUEUES;
  /* Queue y's doorbells are numbers 2y and 2y+1: only queues whose doorbells lie in the mapped registers. */
  uint32_t reachable = x->doorbells >= 2 ? (x->doorbells - 2) / 2 : 0;
  if (sc->nr_io_queues > reachable) sc->nr_io_queues = (uint16_t)reachable;
  if (sc->nr_io_queues == 0) {
    snprintf(err, errlen, "%s %s: no I/O queue usable: the controller granted %u SQs / %u CQs, the doorbell "
             "mapping holds %u doorbells", x->kind, x->target, nsq, ncq, x->doorbells);
    ctrl_destroy(sc, enabled);
    return NULL;
  }
  return sc;
fail:
  snprintf(err, errlen, "%s %s: %s: %s%s%s", x->kind, x->target, step, sc->ctrl.last_error,
           x->last_error(x)[0] ? " / " : "", x->last_error(x));
  ctrl_destroy(sc, enabled);
  return NULL;
}

static struct shared_ctrl *ctrl_acquire(const struct vfiod_options *o, char *err, size_t errlen) {
  char key[300];
  snprintf(key, sizeof key, "%s:%s", o->transport, !strcmp(o->transport, "vfio") ? o->bdf : o->socket);
  pthread_mutex_lock(&g_ctrls_lock);
  struct shared_ctrl *sc;
  for (sc = g_ctrls; sc; sc = sc->next)
    if (!strcmp(sc->key, key)) break;
  if (sc) {
    sc->refs++;
  } else if ((sc = ctrl_open(o, key, err, errlen))) {
    sc->refs = 1;
    sc->next = g_ctrls;
    g_ctrls = sc;
  }
  pthread_mutex_unlock(&g_ctrls_lock);
  return sc;
}

static void ctrl_release(struct shared_ctrl *sc) {
  pthread_mutex_lock(&g_ctrls_lock);
  if (--sc->refs == 0) {
    for (struct shared_ctrl **p = &g_ctrls; *p; p = &(*p)->next)
      if (*p == sc) {
        *p = sc->next;
        break;
      }
    ctrl_destroy(sc, 1);
  }
  pthread_mutex_unlock(&g_ctrls_lock);
}

/* ---------------- jobs ---------------- */

struct slot {
  struct io_u *io_u;
  uint16_t cid;
  uint16_t status; /* NVMe status field of the last completion (0 = success) */
  uint8_t opc;
  uint8_t busy; /* submitted, completion not yet seen */
  uint64_t *prp_list; /* one page: PRP list, or the DSM range descriptor */
  uint64_t prp_iova;
};

struct vfiod_job {
  struct shared_ctrl *sc;
  struct nvme_ns_info ns;
  uint64_t ns_bytes;
  unsigned lba_shift;
  int has_qp;
  struct nvme_qpair qp;
  struct vfiod_dma_region rings; /* SQ, CQ, one PRP page per slot */
  struct nvme_dma_mem rings_mem;
  struct vfiod_dma_region bufs; /* fio's io_u buffers */
  struct slot *slots;
  unsigned nslots, slots_used;
  struct io_u **events;
  unsigned nevents;
  unsigned inflight; /* in the SQ (rung or not), not yet completed */
  unsigned timeout_ms;
  int efd; /* eventfd of the job's MSI-X vector (vfiod_completion=irq), else -1 */
  int failed; /* errno once the controller or transport failed: later calls fail at once, without more noise */
  uint64_t last_health_ms;
  uint32_t max_transfer;
  char desc[400]; /* "vfio-user /path nsid 1" for messages */
};

static const char *opc_name(uint8_t opc) {
  switch (opc) {
  case NVME_IO_READ: return "Read";
  case NVME_IO_WRITE: return "Write";
  case NVME_IO_DSM: return "Dataset Management (deallocate)";
  case NVME_IO_FLUSH: return "Flush";
  default: return "command";
  }
}

static int check_options(struct thread_data *td, const struct vfiod_options *o) {
  if (strcmp(fio_version_string, VFIOD_FIO_VERSION) != 0) {
    log_err("vfiod: this engine was built against %s headers but runs in %s: "
            "rebuild it with bench/fio-engine/build.sh\n",
            VFIOD_FIO_VERSION, fio_version_string);
    return EINVAL;
  }
  if (!td->o.use_thread) {
    log_err("vfiod: job '%s' needs thread=1: jobs share one controller connection per target, which needs one "
            "process (vfiod serve accepts one client per socket)\n", td->o.name);
    return EINVAL;
  }
  if (!o->transport || (strcmp(o->transport, "vfio-user") && strcmp(o->transport, "vfio"))) {
    log_err("vfiod: vfiod_transport=%s: must be vfio-user or vfio\n", o->transport ? o->transport : "");
    return EINVAL;
  }
  if (!strcmp(o->transport, "vfio-user") && (!o->socket || !o->socket[0])) {
    log_err("vfiod: vfiod_transport=vfio-user needs vfiod_socket=<path of a vfiod serve socket>\n");
    return EINVAL;
  }
  if (!o->completion || (strcmp(o->completion, "poll") && strcmp(o->completion, "irq"))) {
    log_err("vfiod: vfiod_completion=%s: must be poll or irq\n", o->completion ? o->completion : "");
    return EINVAL;
  }
  if (!strcmp(o->transport, "vfio") && (!o->bdf || !o->bdf[0])) {
    log_err("vfiod: vfiod_transport=vfio needs vfiod_bdf=<PCI address, e.g. 0000:01:00.1>\n");
    return EINVAL;
  }
  return 0;
}

/*
 * The job's state, created by whichever hook fio calls first (setup() runs in the main thread before the job
 * threads start, unless create_serialize=0 puts it after init()). Returns NULL after logging why.
 */
static struct vfiod_job *job_get(struct thread_data *td) {
  if (td->io_ops_data) return td->io_ops_data;
  const struct vfiod_options *o = td->eo;
  if (check_options(td, o)) return NULL;
  char err[VFIOD_ERR_LEN];
  struct shared_ctrl *sc = ctrl_acquire(o, err, sizeof err);
  if (!sc) {
    log_err("vfiod: %s\n", err);
    return NULL;
  }
  struct vfiod_job *j = calloc(1, sizeof *j);
  if (!j) {
    ctrl_release(sc);
    return NULL;
  }
  j->sc = sc;
  j->rings.fd = j->bufs.fd = j->efd = -1;
  j->timeout_ms = o->timeout_ms;
  snprintf(j->desc, sizeof j->desc, "%s %s nsid %u", sc->x->kind, sc->x->target, o->nsid);
  pthread_mutex_lock(&sc->lock);
  int r = nvme_identify_ns(&sc->ctrl, o->nsid, &j->ns);
  if (r) snprintf(err, sizeof err, "%s", sc->ctrl.last_error);
  j->max_transfer = sc->ctrl.max_transfer;
  pthread_mutex_unlock(&sc->lock);
  if (r) {
    log_err("vfiod: %s: Identify Namespace: %s (the controller has %u namespaces)\n", j->desc, err, sc->ctrl.nn);
    ctrl_release(sc);
    free(j);
    return NULL;
  }
  j->ns_bytes = j->ns.nsze * j->ns.lba_size;
  j->lba_shift = (unsigned)__builtin_ctz(j->ns.lba_size);
  td->io_ops_data = j;
  return j;
}

static void job_free(struct thread_data *td, struct vfiod_job *j) {
  struct shared_ctrl *sc = j->sc;
  char err[VFIOD_ERR_LEN];
  if (ctrl_dead(sc)) j->has_qp = j->bufs.mapped = j->rings.mapped = 0; /* nothing to tell a dead controller */
  if (j->has_qp) {
    pthread_mutex_lock(&sc->lock);
    if (nvme_delete_io_qpair(&sc->ctrl, &j->qp))
      log_err("vfiod: %s: deleting I/O queue %u: %s\n", j->desc, j->qp.qid, sc->ctrl.last_error);
    sc->qid_busy[j->qp.qid] = 0;
    pthread_mutex_unlock(&sc->lock);
  }
  if (j->bufs.mapped && sc->x->dma_unmap(sc->x, &j->bufs, err, sizeof err)) log_err("vfiod: %s: %s\n", j->desc, err);
  vfiod_dma_region_free(&j->bufs);
  if (j->rings.mapped && sc->x->dma_unmap(sc->x, &j->rings, err, sizeof err)) log_err("vfiod: %s: %s\n", j->desc, err);
  vfiod_dma_region_free(&j->rings);
  free(j->slots);
  free(j->events);
  if (j->efd >= 0) close(j->efd); /* after the queue is gone: no more interrupts for it */
  ctrl_release(sc);
  free(j);
  td->io_ops_data = NULL;
}

/* ---------------- fio hooks ---------------- */

static int vfiod_get_file_size(struct thread_data *td, struct fio_file *f) {
  struct vfiod_job *j = job_get(td);
  if (!j) return 1;
  f->real_file_size = j->ns_bytes;
  fio_file_set_size_known(f);
  return 0;
}

static int vfiod_setup(struct thread_data *td) {
  struct vfiod_job *j = job_get(td);
  if (!j) return 1;
  if (!td->files_index) { /* no filename=: one pseudo file standing for the namespace */
    char name[64];
    snprintf(name, sizeof name, "vfiod-nsid%u", j->ns.nsid);
    add_file(td, name, 0, 0);
    td->o.nr_files = td->o.nr_files ?: 1;
    td->o.open_files++;
  }
  /* With a setup() hook fio leaves the file sizes to the engine: every file is the whole namespace. */
  for (unsigned i = 0; i < td->files_index; i++) vfiod_get_file_size(td, td->files[i]);
  return 0;
}

static int vfiod_open_file(struct thread_data *td, struct fio_file *f) { return job_get(td) ? 0 : 1; }
static int vfiod_close_file(struct thread_data *td, struct fio_file *f) { return 0; }

static int vfiod_init(struct thread_data *td) {
  struct vfiod_job *j = job_get(td);
  if (!j) return 1;
  const struct vfiod_options *o = td->eo;
  struct shared_ctrl *sc = j->sc;
  if (ctrl_dead(sc)) {
    log_err("vfiod: %s: the controller failed earlier in this run (see above)\n", j->desc);
    return EIO;
  }
  unsigned depth = td->o.iodepth ? td->o.iodepth : 1;
  unsigned qsize = o->qsize ? o->qsize : depth + 1;
  if (qsize < depth + 1) {
    log_err("vfiod: %s: vfiod_qsize=%u cannot hold iodepth=%u (one entry stays empty): use at least %u\n", j->desc,
            qsize, depth, depth + 1);
    return EINVAL;
  }
  if (qsize > sc->ctrl.mqes) {
    log_err("vfiod: %s: %u queue entries (iodepth=%u) exceed the controller's maximum %u (CAP.MQES+1)\n", j->desc,
            qsize, depth, sc->ctrl.mqes);
    return EINVAL;
  }
  j->nslots = depth;
  j->slots = calloc(depth, sizeof *j->slots);
  j->events = calloc(depth, sizeof *j->events);
  if (!j->slots || !j->events) return ENOMEM;

  char err[VFIOD_ERR_LEN];
  size_t ring_bytes = (((size_t)qsize * 64u + PAGE - 1) & ~(size_t)(PAGE - 1)) +
                      (((size_t)qsize * 16u + PAGE - 1) & ~(size_t)(PAGE - 1)) + (size_t)depth * PAGE;
  int r = vfiod_dma_region_alloc(&j->rings, ring_bytes, "vfiod-fio-queues", err, sizeof err);
  if (r) {
    log_err("vfiod: %s: queue memory: %s\n", j->desc, err);
    return -r;
  }
  pthread_mutex_lock(&sc->lock);
  j->rings.iova = ctrl_take_iova(sc, j->rings.size);
  uint16_t qid = 0;
  for (uint16_t q = 1; q <= sc->nr_io_queues; q++)
    if (!sc->qid_busy[q]) {
      qid = q;
      break;
    }
  if (qid) sc->qid_busy[qid] = 1;
  pthread_mutex_unlock(&sc->lock);
  if (!qid) {
    log_err("vfiod: %s: no free I/O queue: the controller granted %u and all are in use by other jobs "
            "(numjobs too high)\n",
            j->desc, sc->nr_io_queues);
    return EBUSY;
  }
  if ((r = sc->x->dma_map(sc->x, &j->rings, err, sizeof err))) {
    log_err("vfiod: %s: queue memory: %s\n", j->desc, err);
    ctrl_put_qid(sc, qid);
    return -r;
  }
  j->rings_mem = (struct nvme_dma_mem){.vaddr = j->rings.vaddr, .iova = j->rings.iova, .size = j->rings.size};
  for (unsigned i = 0; i < depth; i++) {
    j->slots[i].cid = (uint16_t)i;
    j->slots[i].prp_list = nvme_dma_alloc(&j->rings_mem, PAGE, PAGE, &j->slots[i].prp_iova);
  }
  int vector = -1;
  if (!strcmp(o->completion, "irq")) {
    /* One MSI-X vector per queue (vector = queue id; vector 0 stays the admin queue's). */
    if (!sc->x->irq_bind || qid >= sc->x->irq_vectors) {
      log_err("vfiod: %s: vfiod_completion=irq needs MSI-X vector %u, but the device has %u vectors (use poll)\n",
              j->desc, qid, sc->x->irq_vectors);
      ctrl_put_qid(sc, qid);
      return EINVAL;
    }
    j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (j->efd < 0 || sc->x->irq_bind(sc->x, qid, j->efd, err, sizeof err)) {
      if (j->efd < 0) snprintf(err, sizeof err, "eventfd: %s", strerror(errno));
      log_err("vfiod: %s: interrupt for queue %u: %s\n", j->desc, qid, err);
      ctrl_put_qid(sc, qid);
      return EIO;
    }
    vector = qid;
  }
  pthread_mutex_lock(&sc->lock);
  r = nvme_create_io_qpair_in(&sc->ctrl, &j->rings_mem, &j->qp, qid, (uint16_t)qsize, vector);
  if (r) {
    snprintf(err, sizeof err, "%s", sc->ctrl.last_error);
    sc->qid_busy[qid] = 0;
  }
  pthread_mutex_unlock(&sc->lock);
  if (r) {
    log_err("vfiod: %s: creating I/O queue pair %u (%u entries): %s\n", j->desc, qid, qsize, err);
    return -r;
  }
  j->has_qp = 1;
  snprintf(j->desc + strlen(j->desc), sizeof j->desc - strlen(j->desc), " queue %u", qid);
  return 0;
}

static void vfiod_cleanup(struct thread_data *td) {
  struct vfiod_job *j = td->io_ops_data;
  if (j) job_free(td, j);
}

static int vfiod_iomem_alloc(struct thread_data *td, size_t size) {
  struct vfiod_job *j = job_get(td);
  if (!j) return 1;
  char err[VFIOD_ERR_LEN];
  if (vfiod_dma_region_alloc(&j->bufs, size, "vfiod-fio-buffers", err, sizeof err)) {
    log_err("vfiod: %s: I/O buffers: %s\n", j->desc, err);
    return 1;
  }
  pthread_mutex_lock(&j->sc->lock);
  j->bufs.iova = ctrl_take_iova(j->sc, j->bufs.size);
  pthread_mutex_unlock(&j->sc->lock);
  if (j->sc->x->dma_map(j->sc->x, &j->bufs, err, sizeof err)) {
    log_err("vfiod: %s: I/O buffers: %s\n", j->desc, err);
    vfiod_dma_region_free(&j->bufs);
    return 1;
  }
  td->orig_buffer = (char *)j->bufs.vaddr;
  return 0;
}

static void vfiod_iomem_free(struct thread_data *td) {
  struct vfiod_job *j = td->io_ops_data;
  if (j && j->bufs.vaddr) {
    char err[VFIOD_ERR_LEN];
    if (ctrl_dead(j->sc)) j->bufs.mapped = 0;
    if (j->bufs.mapped && j->sc->x->dma_unmap(j->sc->x, &j->bufs, err, sizeof err))
      log_err("vfiod: %s: %s\n", j->desc, err);
    vfiod_dma_region_free(&j->bufs);
  }
  td->orig_buffer = NULL;
}

static int vfiod_io_u_init(struct thread_data *td, struct io_u *io_u) {
  struct vfiod_job *j = td->io_ops_data;
  if (!j || j->slots_used >= j->nslots) {
    log_err("vfiod: more io_us than iodepth (%u)\n", j ? j->nslots : 0);
    return 1;
  }
  struct slot *s = &j->slots[j->slots_used++];
  s->io_u = io_u;
  io_u->engine_data = s;
  return 0;
}

static void vfiod_io_u_free(struct thread_data *td, struct io_u *io_u) { io_u->engine_data = NULL; }

/* Fail one io_u before it reaches the device. */
static enum fio_q_status reject(struct io_u *io_u, int err) {
  io_u->error = err;
  io_u->resid = io_u->xfer_buflen;
  return FIO_Q_COMPLETED;
}

static enum fio_q_status vfiod_queue(struct thread_data *td, struct io_u *io_u) {
  struct vfiod_job *j = td->io_ops_data;
  struct slot *s = io_u->engine_data;
  fio_ro_check(td, io_u);
  if (!j->failed && ctrl_dead(j->sc)) {
    log_err("vfiod: %s: the controller failed in another job (see above)\n", j->desc);
    j->failed = EIO;
  }
  if (j->failed) return reject(io_u, j->failed);
  uint64_t mask = j->ns.lba_size - 1u;
  struct nvme_sqe sqe;
  s->status = 0;
  if (io_u->ddir == DDIR_READ || io_u->ddir == DDIR_WRITE || io_u->ddir == DDIR_TRIM) {
    if ((io_u->offset & mask) || (io_u->xfer_buflen & mask) || io_u->xfer_buflen == 0) {
      log_err("vfiod: %s: %s of %llu bytes at offset %llu is not a multiple of the %u-byte LBA size\n", j->desc,
              io_ddir_name(io_u->ddir), io_u->xfer_buflen, io_u->offset, j->ns.lba_size);
      return reject(io_u, EINVAL);
    }
  }
  uint64_t slba = io_u->offset >> j->lba_shift;
  uint64_t nlb = io_u->xfer_buflen >> j->lba_shift;
  switch (io_u->ddir) {
  case DDIR_READ:
  case DDIR_WRITE: {
    uint8_t *buf = io_u->xfer_buf;
    if (buf < j->bufs.vaddr || buf + io_u->xfer_buflen > j->bufs.vaddr + j->bufs.size) {
      log_err("vfiod: %s: io_u buffer %p is outside the engine's DMA-mapped buffers\n", j->desc, io_u->xfer_buf);
      return reject(io_u, EFAULT);
    }
    if ((uintptr_t)buf & 3u) { /* PRP entries address dwords */
      log_err("vfiod: %s: io_u buffer %p is not 4-byte aligned (mem_align?)\n", j->desc, io_u->xfer_buf);
      return reject(io_u, EINVAL);
    }
    uint64_t limit = j->max_transfer && j->max_transfer < (2u << 20) ? j->max_transfer : (2u << 20);
    if (io_u->xfer_buflen > limit || nlb > 65536) {
      log_err("vfiod: %s: %llu-byte transfer exceeds the limit of %" PRIu64 " bytes (MDTS / one PRP list)\n", j->desc,
              io_u->xfer_buflen, limit);
      return reject(io_u, EINVAL);
    }
    uint64_t prp1, prp2;
    if (nvme_build_prps(j->bufs.iova + (uint64_t)(buf - j->bufs.vaddr), (uint32_t)io_u->xfer_buflen, s->prp_list,
                        s->prp_iova, &prp1, &prp2))
      return reject(io_u, EINVAL); /* cannot happen within the limit above */
    s->opc = io_u->ddir == DDIR_READ ? NVME_IO_READ : NVME_IO_WRITE;
    nvme_build_rw(&sqe, s->opc, s->cid, j->ns.nsid, slba, (uint32_t)nlb, prp1, prp2);
    break;
  }
  case DDIR_TRIM:
    if (nlb > UINT32_MAX) return reject(io_u, EINVAL);
    nvme_fill_dsm_range(s->prp_list, slba, (uint32_t)nlb);
    s->opc = NVME_IO_DSM;
    nvme_build_dsm(&sqe, s->cid, j->ns.nsid, s->prp_iova, NVME_DSM_ATTR_DEALLOCATE);
    break;
  case DDIR_SYNC:
  case DDIR_DATASYNC:
    /* Flush covers completed writes only: let everything outstanding finish first. */
    if (j->inflight) return FIO_Q_BUSY;
    s->opc = NVME_IO_FLUSH;
    nvme_build_flush(&sqe, s->cid, j->ns.nsid);
    break;
  default:
    log_err("vfiod: %s: unsupported I/O direction %s\n", j->desc, io_ddir_name(io_u->ddir));
    return reject(io_u, EINVAL);
  }
  if (nvme_qpair_submit(&j->qp, &sqe)) return FIO_Q_BUSY; /* cannot happen with qsize > iodepth; be safe */
  s->busy = 1;
  j->inflight++;
  return FIO_Q_QUEUED;
}

static int ring_sq(struct vfiod_job *j) {
  if (j->failed) return -j->failed;
  if (nvme_qpair_ring_sq(&j->qp) == 0) return 0;
  log_err("vfiod: %s: SQ doorbell write failed: %s\n", j->desc, j->sc->x->last_error(j->sc->x));
  j->failed = EIO;
  ctrl_mark_dead(j->sc);
  return -EIO;
}

static int vfiod_commit(struct thread_data *td) { return ring_sq(td->io_ops_data); }

/*
 * Once per getevents call (and before sleeping), not per reaped batch: with trapped doorbells each write is a
 * message to the server. The CQ cannot overflow meanwhile: fio submits nothing during getevents, and at most
 * iodepth < qsize completions are unacknowledged.
 */
static int ring_cq(struct vfiod_job *j) {
  if (nvme_qpair_ring_cq(&j->qp) == 0) return 0;
  log_err("vfiod: %s: CQ doorbell write failed: %s\n", j->desc, j->sc->x->last_error(j->sc->x));
  j->failed = EIO;
  ctrl_mark_dead(j->sc);
  return -EIO;
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * While waiting for completions: is the controller still there? A CSTS read fails when the vfio-user server went
 * away, reads all ones when a PCI device is gone, and has CFS set after a fatal controller error.
 */
static int check_health(struct vfiod_job *j) {
  struct vfiod_xport *x = j->sc->x;
  uint32_t csts = 0;
  if (x->ops.read32(x->ops.ctx, NVME_REG_CSTS, &csts)) {
    log_err("vfiod: %s: controller unreachable with %u commands outstanding: %s\n", j->desc, j->inflight,
            x->last_error(x));
    return EIO;
  }
  if (csts == 0xffffffffu) {
    log_err("vfiod: %s: CSTS reads all ones with %u commands outstanding: device gone\n", j->desc, j->inflight);
    return ENODEV;
  }
  if (csts & 2u) {
    log_err("vfiod: %s: controller fatal status (CSTS 0x%x) with %u commands outstanding\n", j->desc, csts,
            j->inflight);
    return EIO;
  }
  return 0;
}

static int vfiod_getevents(struct thread_data *td, unsigned int min, unsigned int max, const struct timespec *t) {
  struct vfiod_job *j = td->io_ops_data;
  if (j->failed) return -j->failed;
  struct nvme_cqe cqes[REAP_BATCH];
  unsigned n = 0, spins = 0;
  uint64_t start = 0, wait_ms = t ? (uint64_t)t->tv_sec * 1000u + (uint64_t)t->tv_nsec / 1000000u : 0;
  if (max > j->nslots) max = j->nslots;
  if (ring_sq(j)) return -EIO;
  for (;;) {
    unsigned want = max - n < REAP_BATCH ? max - n : REAP_BATCH;
    int got = want ? nvme_qpair_reap(&j->qp, cqes, (int)want) : 0;
    for (int i = 0; i < got; i++) {
      if (cqes[i].cid >= j->nslots || !j->slots[cqes[i].cid].busy || cqes[i].sqid != j->qp.qid) {
        log_err("vfiod: %s: completion for command id %u of SQ %u, which is not outstanding (status 0x%x)\n",
                j->desc, cqes[i].cid, cqes[i].sqid, NVME_CQE_STATUS(&cqes[i]));
        j->failed = EIO;
        ctrl_mark_dead(j->sc);
        return -EIO;
      }
      struct slot *s = &j->slots[cqes[i].cid];
      s->busy = 0;
      struct io_u *io_u = s->io_u;
      s->status = NVME_CQE_STATUS(&cqes[i]) & 0x7ffu;
      io_u->error = s->status ? EIO : 0;
      io_u->resid = s->status ? io_u->xfer_buflen : 0;
      j->events[n++] = io_u;
      j->inflight--;
    }
    if (got > 0) {
      spins = 0;
      start = 0;
    }
    if (n >= max || (n >= min && got < (int)want)) break;
    if (got > 0) continue;
    if (n >= min) break;
    if (++spins < (j->efd >= 0 ? IRQ_SPINS : POLL_SPINS)) {
      nvme_cpu_relax();
      continue;
    }
    spins = 0;
    uint64_t now = mono_ms();
    if (!start) start = now;
    if (t && now - start >= wait_ms) break;
    if (j->efd >= 0 && j->inflight) {
      /* Sleep until the queue's vector fires; bounded so the health and timeout checks below still run. */
      if (ring_cq(j)) return -EIO;
      uint64_t left = t ? wait_ms - (now - start) : 100;
      struct pollfd pfd = {.fd = j->efd, .events = POLLIN};
      if (poll(&pfd, 1, left < 100 ? (int)left : 100) > 0) {
        uint64_t count;
        if (read(j->efd, &count, sizeof count) < 0 && errno != EAGAIN) {
          log_err("vfiod: %s: reading the interrupt eventfd: %s\n", j->desc, strerror(errno));
          j->failed = EIO;
          return -EIO;
        }
      }
      now = mono_ms();
    }
    if (j->inflight && now - j->last_health_ms >= 100) {
      j->last_health_ms = now;
      if ((j->failed = check_health(j))) {
        ctrl_mark_dead(j->sc);
        return -j->failed;
      }
    }
    if (j->inflight && now - start >= j->timeout_ms) {
      const volatile struct nvme_cqe *e = &j->qp.cq[j->qp.cq_head];
      log_err("vfiod: %s: no completion for %u ms with %u commands outstanding (SQ tail %u, CQ head %u, phase %u, "
              "CQE at head: cid %u status 0x%04x): controller hung?\n",
              j->desc, j->timeout_ms, j->inflight, j->qp.sq_tail, j->qp.cq_head, j->qp.phase, e->cid, e->status);
      j->failed = ETIMEDOUT;
      ctrl_mark_dead(j->sc);
      return -ETIMEDOUT;
    }
    if (!j->inflight) {
      log_err("vfiod: %s: fio waits for %u completions but nothing is outstanding\n", j->desc, min);
      return -EIO;
    }
  }
  if (ring_cq(j)) return -EIO;
  j->nevents = n;
  return (int)n;
}

static struct io_u *vfiod_event(struct thread_data *td, int event) {
  struct vfiod_job *j = td->io_ops_data;
  return j->events[event];
}

static char *vfiod_errdetails(struct io_u *io_u) {
  struct slot *s = io_u->engine_data;
  char *msg = NULL;
  if (!s || !s->status) return NULL;
  unsigned sct = (s->status >> 8) & 7u, sc = s->status & 0xffu;
  const char *what = sct == 0 && sc == 0x80 ? " (LBA out of range)"
                     : sct == 0 && sc == 0x0b ? " (invalid namespace or format)"
                     : sct == 0 && sc == 0x02 ? " (invalid field)"
                     : sct == 0 && sc == 0x04 ? " (data transfer error)"
                     : sct == 2 && sc == 0x81 ? " (unrecovered read error)"
                     : sct == 2 && sc == 0x85 ? " (compare failure)"
                     : sct == 2 && sc == 0x82 ? " (write fault)"
                     : sct == 0 && sc == 0x20 ? " (namespace not ready)"
                     : "";
  if (asprintf(&msg, "vfiod: NVMe %s cid %u: status SCT %u SC 0x%02x%s", opc_name(s->opc), s->cid, sct, sc, what) < 0)
    return NULL;
  return msg;
}

struct ioengine_ops ioengine = {
    .name = "vfiod",
    .version = FIO_IOOPS_VERSION,
    /*
     * DISKLESSIO: the "file" is a namespace; MEMALIGN: page-aligned buffers (PRP entries after the first);
     * NO_OFFLOAD: a queue pair belongs to one thread, so fio must not submit from its offload workers.
     */
    .flags = FIO_DISKLESSIO | FIO_NOEXTEND | FIO_NODISKUTIL | FIO_MEMALIGN | FIO_NO_OFFLOAD,
    .setup = vfiod_setup,
    .init = vfiod_init,
    .queue = vfiod_queue,
    .commit = vfiod_commit,
    .getevents = vfiod_getevents,
    .event = vfiod_event,
    .errdetails = vfiod_errdetails,
    .cleanup = vfiod_cleanup,
    .open_file = vfiod_open_file,
    .close_file = vfiod_close_file,
    .get_file_size = vfiod_get_file_size,
    .iomem_alloc = vfiod_iomem_alloc,
    .iomem_free = vfiod_iomem_free,
    .io_u_init = vfiod_io_u_init,
    .io_u_free = vfiod_io_u_free,
    .option_struct_size = sizeof(struct vfiod_options),
    .options = options,
};
