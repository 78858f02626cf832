// VFIO: the ioctls a passthrough manager needs to prove a device is usable, and a userspace driver needs to talk to
// it (BAR mmap goes through memory.cc's mmap() on the device fd). Two ways to get a device fd and an IOMMU context:
//  * the legacy container/group API (/dev/vfio/vfio + /dev/vfio/<group>, type1 IOMMU), on every kernel;
//  * iommufd + the VFIO device cdev (/dev/iommu + /dev/vfio/devices/vfioN: bind, IOAS, attach), Linux >= 6.2 built
//    with CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV.
// Device ioctls (info, regions, irqs, reset, config space) are the same for both.
//
// Policy-free like the rest of the addon: every entry point validates its arguments, does one thing, and throws a
// system error with errno/code/syscall and a message naming the ioctl, the fd and the region/irq index on failure.
// Callers (src/vfio/) add the BDF.
//
// DMA mappings pin the addon mapping they point into (memory.h): while the device may write to it, munmap() of the
// ArrayBuffer throws EBUSY and a garbage-collected ArrayBuffer is not unmapped. vfioIommuUnmapDma() and
// vfioCloseContainer() (iommufdIoasUnmap(), iommufdDestroy() of the IOAS, iommufdClose()) drop the pins. Closing a
// container or iommufd with plain close() leaves its buffers pinned.
#include "common.h"
#include "memory.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace vfiod {
namespace {

// Every DMA mapping made through vfioIommuMapDma (ioas 0: a type1 container) or iommufdIoasMap (ioas: the IOAS id,
// never 0 — iommufd object ids start at 1) -> the pinned mapping behind it.
struct DmaKey {
  int fd;
  uint32_t ioas;
  uint64_t iova;
  bool operator<(const DmaKey& o) const {
    return fd != o.fd ? fd < o.fd : ioas != o.ioas ? ioas < o.ioas : iova < o.iova;
  }
};
struct DmaRecord {
  Mapping* mapping;
  uint64_t size;
};
std::mutex g_dmaMutex;
std::map<DmaKey, DmaRecord> g_dma;

// Unpins every mapping of `fd` (and of `ioas` unless it is kAnyIoas). Caller holds g_dmaMutex.
constexpr int64_t kAnyIoas = -1;
void UnpinAll(int fd, int64_t ioas) {
  for (auto it = g_dma.begin(); it != g_dma.end();) {
    if (it->first.fd == fd && (ioas == kAnyIoas || it->first.ioas == static_cast<uint32_t>(ioas))) {
      UnpinMapping(it->second.mapping);
      it = g_dma.erase(it);
    } else {
      ++it;
    }
  }
}

int IoctlRetry(int fd, unsigned long request, void* arg) {
  int rc;
  do {
    rc = ::ioctl(fd, request, arg);
  } while (rc < 0 && errno == EINTR);
  return rc;
}
int IoctlRetryInt(int fd, unsigned long request, unsigned long arg) {
  int rc;
  do {
    rc = ::ioctl(fd, request, arg);
  } while (rc < 0 && errno == EINTR);
  return rc;
}

std::string FdText(int fd) { return "fd " + std::to_string(fd); }

// One ioctl on `fd` (EINTR retried); on failure throws "ioctl(<what>, fd N)" with errno and returns -1.
int IoctlOrThrow(Napi::Env env, int fd, unsigned long request, void* arg, const std::string& what) {
  int rc = IoctlRetry(fd, request, arg);
  if (rc < 0) ThrowErrno(env, errno, "ioctl", what + ", " + FdText(fd));
  return rc;
}
int IoctlOrThrowInt(Napi::Env env, int fd, unsigned long request, unsigned long arg, const std::string& what) {
  int rc = IoctlRetryInt(fd, request, arg);
  if (rc < 0) ThrowErrno(env, errno, "ioctl", what + ", " + FdText(fd));
  return rc;
}

// open(path, O_RDWR | O_CLOEXEC) (EINTR retried); on failure throws naming the path and returns -1.
int OpenRdwrOrThrow(Napi::Env env, const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) ThrowErrno(env, errno, "open", path);
  return fd;
}

// Number for values that fit exactly in a double, else BigInt (region offsets/sizes of exotic regions).
Napi::Value U64(Napi::Env env, uint64_t v) {
  if (v <= static_cast<uint64_t>(kMaxSafeInteger)) return Napi::Number::New(env, static_cast<double>(v));
  return Napi::BigInt::New(env, v);
}

// Walks a VFIO capability chain in `buf` (offsets relative to the start of the info struct).
template <typename F>
void WalkCaps(const std::vector<uint8_t>& buf, uint32_t first, F&& visit) {
  uint32_t off = first;
  unsigned guard = 0;
  while (off != 0 && off + sizeof(vfio_info_cap_header) <= buf.size() && guard++ < 64) {
    vfio_info_cap_header hdr;
    std::memcpy(&hdr, buf.data() + off, sizeof hdr);
    visit(hdr, off);
    if (hdr.next <= off) break;  // chains only go forward; refuse loops
    off = hdr.next;
  }
}

// ---- container / group ----

// vfioOpenContainer(path = '/dev/vfio/vfio') -> fd; checks VFIO_GET_API_VERSION.
Napi::Value OpenContainer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = "/dev/vfio/vfio";
  if (info.Length() > 0 && !info[0].IsUndefined() &&
      !GetString(info, 0, "vfioOpenContainer", "path", PATH_MAX - 1, &path)) {
    return Napi::Value();
  }
  int fd = OpenRdwrOrThrow(env, path);
  if (fd < 0) return Napi::Value();
  int version = IoctlRetryInt(fd, VFIO_GET_API_VERSION, 0);
  if (version != VFIO_API_VERSION) {
    int err = version < 0 ? errno : EINVAL;
    ::close(fd);
    if (version < 0) {
      ThrowErrno(env, err, "ioctl", "VFIO_GET_API_VERSION, " + path);
    } else {
      ThrowErrnoMessage(env, EINVAL, "ioctl",
                        "ioctl(VFIO_GET_API_VERSION, " + path + "): API version " + std::to_string(version) +
                            ", expected " + std::to_string(VFIO_API_VERSION));
    }
    return Napi::Value();
  }
  return Napi::Number::New(env, fd);
}

// vfioCheckExtension(containerFd, extension) -> number (0 = unsupported)
Napi::Value CheckExtension(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t ext;
  if (!GetFd(info, 0, "vfioCheckExtension", &fd) ||
      !GetInteger(info, 1, "vfioCheckExtension", "extension", 0, INT_MAX, &ext)) {
    return Napi::Value();
  }
  int rc = IoctlOrThrowInt(env, fd, VFIO_CHECK_EXTENSION, static_cast<unsigned long>(ext),
                           "VFIO_CHECK_EXTENSION " + std::to_string(ext));
  if (rc < 0) return Napi::Value();
  return Napi::Number::New(env, rc);
}

// vfioSetIommu(containerFd, type)
Napi::Value SetIommu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t type;
  if (!GetFd(info, 0, "vfioSetIommu", &fd) || !GetInteger(info, 1, "vfioSetIommu", "type", 0, INT_MAX, &type)) {
    return Napi::Value();
  }
  if (IoctlOrThrowInt(env, fd, VFIO_SET_IOMMU, static_cast<unsigned long>(type),
                      "VFIO_SET_IOMMU type " + std::to_string(type)) < 0) {
    return Napi::Value();
  }
  return env.Undefined();
}

// vfioIommuGetInfo(containerFd) -> { flags, iovaPgsizes, iovaRanges?: [{start, end}], dmaAvail? }
Napi::Value IommuGetInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "vfioIommuGetInfo", &fd)) return Napi::Value();
  std::vector<uint8_t> buf(sizeof(vfio_iommu_type1_info));
  for (int attempt = 0; attempt < 3; attempt++) {
    auto* ii = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
    std::memset(buf.data(), 0, buf.size());
    ii->argsz = static_cast<uint32_t>(buf.size());
    if (IoctlOrThrow(env, fd, VFIO_IOMMU_GET_INFO, buf.data(), "VFIO_IOMMU_GET_INFO") < 0) return Napi::Value();
    if (ii->argsz <= buf.size() || ii->argsz > (1u << 20)) break;
    buf.resize(ii->argsz);
  }
  vfio_iommu_type1_info ii;
  std::memcpy(&ii, buf.data(), sizeof ii);
  Napi::Object out = Napi::Object::New(env);
  out.Set("flags", Napi::Number::New(env, ii.flags));
  out.Set("iovaPgsizes", U64(env, ii.iova_pgsizes));
  if ((ii.flags & VFIO_IOMMU_INFO_CAPS) && ii.cap_offset != 0 && ii.argsz <= buf.size()) {
    WalkCaps(buf, ii.cap_offset, [&](const vfio_info_cap_header& hdr, uint32_t off) {
      if (hdr.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE &&
          off + sizeof(vfio_iommu_type1_info_cap_iova_range) <= buf.size()) {
        vfio_iommu_type1_info_cap_iova_range cap;
        std::memcpy(&cap, buf.data() + off, sizeof cap);
        Napi::Array ranges = Napi::Array::New(env);
        size_t base = off + sizeof cap;
        for (uint32_t i = 0; i < cap.nr_iovas && base + (i + 1) * sizeof(vfio_iova_range) <= buf.size(); i++) {
          vfio_iova_range r;
          std::memcpy(&r, buf.data() + base + i * sizeof r, sizeof r);
          Napi::Object range = Napi::Object::New(env);
          range.Set("start", U64(env, r.start));
          range.Set("end", U64(env, r.end));
          ranges.Set(i, range);
        }
        out.Set("iovaRanges", ranges);
      } else if (hdr.id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL &&
                 off + sizeof(vfio_iommu_type1_info_dma_avail) <= buf.size()) {
        vfio_iommu_type1_info_dma_avail cap;
        std::memcpy(&cap, buf.data() + off, sizeof cap);
        out.Set("dmaAvail", Napi::Number::New(env, cap.avail));
      }
    });
  }
  return out;
}

// vfioOpenGroup(path) -> fd (e.g. '/dev/vfio/12')
Napi::Value OpenNode(const Napi::CallbackInfo& info, const char* fn, const char* defaultPath);
Napi::Value OpenGroup(const Napi::CallbackInfo& info) { return OpenNode(info, "vfioOpenGroup", nullptr); }

// vfioGroupGetStatus(groupFd) -> { flags, viable, containerSet }
Napi::Value GroupGetStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "vfioGroupGetStatus", &fd)) return Napi::Value();
  vfio_group_status st{};
  st.argsz = sizeof st;
  if (IoctlOrThrow(env, fd, VFIO_GROUP_GET_STATUS, &st, "VFIO_GROUP_GET_STATUS") < 0) return Napi::Value();
  Napi::Object out = Napi::Object::New(env);
  out.Set("flags", Napi::Number::New(env, st.flags));
  out.Set("viable", Napi::Boolean::New(env, (st.flags & VFIO_GROUP_FLAGS_VIABLE) != 0));
  out.Set("containerSet", Napi::Boolean::New(env, (st.flags & VFIO_GROUP_FLAGS_CONTAINER_SET) != 0));
  return out;
}

// vfioGroupSetContainer(groupFd, containerFd)
Napi::Value GroupSetContainer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd, container;
  if (!GetFd(info, 0, "vfioGroupSetContainer", &fd)) return Napi::Value();
  int64_t c;
  if (!GetInteger(info, 1, "vfioGroupSetContainer", "containerFd", 0, INT_MAX, &c)) return Napi::Value();
  container = static_cast<int>(c);
  if (IoctlRetry(fd, VFIO_GROUP_SET_CONTAINER, &container) < 0) {
    ThrowErrno(env, errno, "ioctl",
               "VFIO_GROUP_SET_CONTAINER, group " + FdText(fd) + ", container " + FdText(container));
    return Napi::Value();
  }
  return env.Undefined();
}

// vfioGroupUnsetContainer(groupFd)
Napi::Value GroupUnsetContainer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "vfioGroupUnsetContainer", &fd)) return Napi::Value();
  if (IoctlOrThrowInt(env, fd, VFIO_GROUP_UNSET_CONTAINER, 0, "VFIO_GROUP_UNSET_CONTAINER") < 0) return Napi::Value();
  return env.Undefined();
}

// vfioGroupGetDeviceFd(groupFd, name) -> device fd (close-on-exec); name is the BDF for PCI devices.
Napi::Value GroupGetDeviceFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  std::string name;
  if (!GetFd(info, 0, "vfioGroupGetDeviceFd", &fd) ||
      !GetString(info, 1, "vfioGroupGetDeviceFd", "name", 255, &name)) {
    return Napi::Value();
  }
  if (name.empty()) {
    ThrowInvalidValue(env, "vfioGroupGetDeviceFd: \"name\" must not be empty");
    return Napi::Value();
  }
  int dev = IoctlRetry(fd, VFIO_GROUP_GET_DEVICE_FD, const_cast<char*>(name.c_str()));
  if (dev < 0) {
    ThrowErrno(env, errno, "ioctl", "VFIO_GROUP_GET_DEVICE_FD '" + name + "', group " + FdText(fd));
    return Napi::Value();
  }
  // VFIO device fds are created with O_CLOEXEC already; make sure anyway.
  int fl = fcntl(dev, F_GETFD);
  if (fl >= 0 && !(fl & FD_CLOEXEC)) fcntl(dev, F_SETFD, fl | FD_CLOEXEC);
  return Napi::Number::New(env, dev);
}

// ---- device ----

// vfioDeviceGetInfo(deviceFd) -> { flags, numRegions, numIrqs, reset, pci }
Napi::Value DeviceGetInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "vfioDeviceGetInfo", &fd)) return Napi::Value();
  vfio_device_info di{};
  di.argsz = sizeof di;
  if (IoctlOrThrow(env, fd, VFIO_DEVICE_GET_INFO, &di, "VFIO_DEVICE_GET_INFO") < 0) return Napi::Value();
  Napi::Object out = Napi::Object::New(env);
  out.Set("flags", Napi::Number::New(env, di.flags));
  out.Set("numRegions", Napi::Number::New(env, di.num_regions));
  out.Set("numIrqs", Napi::Number::New(env, di.num_irqs));
  out.Set("reset", Napi::Boolean::New(env, (di.flags & VFIO_DEVICE_FLAGS_RESET) != 0));
  out.Set("pci", Napi::Boolean::New(env, (di.flags & VFIO_DEVICE_FLAGS_PCI) != 0));
  return out;
}

// vfioDeviceGetRegionInfo(deviceFd, index) -> { index, flags, size, offset, readable, writable, mmap,
//   sparseMmap?: [{offset, size}], type?: {type, subtype}, msixMappable, capIds: number[] }
Napi::Value DeviceGetRegionInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t index;
  if (!GetFd(info, 0, "vfioDeviceGetRegionInfo", &fd) ||
      !GetInteger(info, 1, "vfioDeviceGetRegionInfo", "index", 0, UINT32_MAX, &index)) {
    return Napi::Value();
  }
  std::vector<uint8_t> buf(sizeof(vfio_region_info));
  vfio_region_info ri{};
  for (int attempt = 0; attempt < 3; attempt++) {
    std::memset(buf.data(), 0, buf.size());
    auto* p = reinterpret_cast<vfio_region_info*>(buf.data());
    p->argsz = static_cast<uint32_t>(buf.size());
    p->index = static_cast<uint32_t>(index);
    if (IoctlRetry(fd, VFIO_DEVICE_GET_REGION_INFO, buf.data()) < 0) {
      ThrowErrno(env, errno, "ioctl",
                 "VFIO_DEVICE_GET_REGION_INFO, " + FdText(fd) + ", region " + std::to_string(index));
      return Napi::Value();
    }
    std::memcpy(&ri, buf.data(), sizeof ri);
    // With capabilities the kernel reports the size it needs in argsz: ask again with a big enough buffer.
    if (!(ri.flags & VFIO_REGION_INFO_FLAG_CAPS) || ri.argsz <= buf.size() || ri.argsz > (1u << 20)) break;
    buf.resize(ri.argsz);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("index", Napi::Number::New(env, ri.index));
  out.Set("flags", Napi::Number::New(env, ri.flags));
  out.Set("size", U64(env, ri.size));
  out.Set("offset", U64(env, ri.offset));
  out.Set("readable", Napi::Boolean::New(env, (ri.flags & VFIO_REGION_INFO_FLAG_READ) != 0));
  out.Set("writable", Napi::Boolean::New(env, (ri.flags & VFIO_REGION_INFO_FLAG_WRITE) != 0));
  out.Set("mmap", Napi::Boolean::New(env, (ri.flags & VFIO_REGION_INFO_FLAG_MMAP) != 0));
  bool msixMappable = false;
  Napi::Array capIds = Napi::Array::New(env);
  if ((ri.flags & VFIO_REGION_INFO_FLAG_CAPS) && ri.cap_offset != 0 && ri.argsz <= buf.size()) {
    uint32_t n = 0;
    WalkCaps(buf, ri.cap_offset, [&](const vfio_info_cap_header& hdr, uint32_t off) {
      capIds.Set(n++, Napi::Number::New(env, hdr.id));
      if (hdr.id == VFIO_REGION_INFO_CAP_SPARSE_MMAP && off + sizeof(vfio_region_info_cap_sparse_mmap) <= buf.size()) {
        vfio_region_info_cap_sparse_mmap cap;
        std::memcpy(&cap, buf.data() + off, sizeof cap);
        Napi::Array areas = Napi::Array::New(env);
        size_t base = off + sizeof cap;
        for (uint32_t i = 0; i < cap.nr_areas && base + (i + 1) * sizeof(vfio_region_sparse_mmap_area) <= buf.size();
             i++) {
          vfio_region_sparse_mmap_area a;
          std::memcpy(&a, buf.data() + base + i * sizeof a, sizeof a);
          Napi::Object area = Napi::Object::New(env);
          area.Set("offset", U64(env, a.offset));
          area.Set("size", U64(env, a.size));
          areas.Set(i, area);
        }
        out.Set("sparseMmap", areas);
      } else if (hdr.id == VFIO_REGION_INFO_CAP_TYPE && off + sizeof(vfio_region_info_cap_type) <= buf.size()) {
        vfio_region_info_cap_type cap;
        std::memcpy(&cap, buf.data() + off, sizeof cap);
        Napi::Object type = Napi::Object::New(env);
        type.Set("type", Napi::Number::New(env, cap.type));
        type.Set("subtype", Napi::Number::New(env, cap.subtype));
        out.Set("type", type);
      } else if (hdr.id == VFIO_REGION_INFO_CAP_MSIX_MAPPABLE) {
        msixMappable = true;
      }
    });
  }
  out.Set("msixMappable", Napi::Boolean::New(env, msixMappable));
  out.Set("capIds", capIds);
  return out;
}

// vfioDeviceGetIrqInfo(deviceFd, index) -> { index, flags, count, eventfd, maskable, automasked, noresize }
Napi::Value DeviceGetIrqInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t index;
  if (!GetFd(info, 0, "vfioDeviceGetIrqInfo", &fd) ||
      !GetInteger(info, 1, "vfioDeviceGetIrqInfo", "index", 0, UINT32_MAX, &index)) {
    return Napi::Value();
  }
  vfio_irq_info ii{};
  ii.argsz = sizeof ii;
  ii.index = static_cast<uint32_t>(index);
  if (IoctlRetry(fd, VFIO_DEVICE_GET_IRQ_INFO, &ii) < 0) {
    ThrowErrno(env, errno, "ioctl", "VFIO_DEVICE_GET_IRQ_INFO, " + FdText(fd) + ", irq " + std::to_string(index));
    return Napi::Value();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("index", Napi::Number::New(env, ii.index));
  out.Set("flags", Napi::Number::New(env, ii.flags));
  out.Set("count", Napi::Number::New(env, ii.count));
  out.Set("eventfd", Napi::Boolean::New(env, (ii.flags & VFIO_IRQ_INFO_EVENTFD) != 0));
  out.Set("maskable", Napi::Boolean::New(env, (ii.flags & VFIO_IRQ_INFO_MASKABLE) != 0));
  out.Set("automasked", Napi::Boolean::New(env, (ii.flags & VFIO_IRQ_INFO_AUTOMASKED) != 0));
  out.Set("noresize", Napi::Boolean::New(env, (ii.flags & VFIO_IRQ_INFO_NORESIZE) != 0));
  return out;
}

// vfioDeviceReset(deviceFd)
Napi::Value DeviceReset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "vfioDeviceReset", &fd)) return Napi::Value();
  if (IoctlOrThrowInt(env, fd, VFIO_DEVICE_RESET, 0, "VFIO_DEVICE_RESET") < 0) return Napi::Value();
  return env.Undefined();
}

// vfioRegionRead(deviceFd, offset, buffer) -> bytes read (fills the buffer unless the region ends first).
// vfioRegionWrite(deviceFd, offset, buffer) -> bytes written. `offset` is the absolute file offset
// (region offset + offset within the region). One pread/pwrite per call (retried on EINTR, continued on a short
// transfer): vfio-pci splits config space accesses into naturally aligned 1/2/4-byte accesses itself.
Napi::Value RegionTransfer(const Napi::CallbackInfo& info, bool write) {
  Napi::Env env = info.Env();
  const char* fn = write ? "vfioRegionWrite" : "vfioRegionRead";
  int fd;
  int64_t offset;
  uint8_t* data;
  size_t length;
  if (!GetFd(info, 0, fn, &fd) || !GetInteger(info, 1, fn, "offset", 0, kMaxSafeInteger, &offset) ||
      !GetUint8Array(info, 2, fn, "buffer", &data, &length)) {
    return Napi::Value();
  }
  size_t done = 0;
  while (done < length) {
    ssize_t n = write ? ::pwrite(fd, data + done, length - done, static_cast<off_t>(offset + done))
                      : ::pread(fd, data + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ThrowErrno(env, errno, write ? "pwrite" : "pread",
                 FdText(fd) + ", offset 0x" + [](uint64_t v) {
                   char b[32];
                   snprintf(b, sizeof b, "%llx", static_cast<unsigned long long>(v));
                   return std::string(b);
                 }(static_cast<uint64_t>(offset + done)) + ", length " + std::to_string(length - done));
      return Napi::Value();
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return Napi::Number::New(env, static_cast<double>(done));
}
Napi::Value RegionRead(const Napi::CallbackInfo& info) { return RegionTransfer(info, false); }
Napi::Value RegionWrite(const Napi::CallbackInfo& info) { return RegionTransfer(info, true); }

// ---- DMA (shared by the type1 container and the iommufd IOAS) ----

// The arguments of a DMA map call, validated, with the buffer pinned.
struct DmaMapArgs {
  int fd = -1;
  uint32_t ioas = 0;
  int64_t bufOff = 0, iova = 0, size = 0;
  int64_t flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  PinnedMapping pin;
};

// Reads (fd, [ioasId,] buffer, bufferOffset, iova, size, flags?) — `first` is the index of `buffer` — checks page
// alignment and bounds, and pins the buffer. Returns false after throwing (nothing left pinned).
bool ParseDmaMap(const Napi::CallbackInfo& info, const char* fn, size_t first, DmaMapArgs* a) {
  Napi::Env env = info.Env();
  if (!GetFd(info, 0, fn, &a->fd)) return false;
  if (first == 2) {
    int64_t ioas;
    if (!GetInteger(info, 1, fn, "ioasId", 1, UINT32_MAX, &ioas)) return false;
    a->ioas = static_cast<uint32_t>(ioas);
  }
  if (!GetInteger(info, first + 1, fn, "bufferOffset", 0, kMaxSafeInteger, &a->bufOff) ||
      !GetInteger(info, first + 2, fn, "iova", 0, kMaxSafeInteger, &a->iova) ||
      !GetInteger(info, first + 3, fn, "size", 1, kMaxSafeInteger, &a->size)) {
    return false;
  }
  if (info.Length() > first + 4 && !info[first + 4].IsUndefined() &&
      !GetInteger(info, first + 4, fn, "flags", 1, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, &a->flags)) {
    return false;
  }
  const int64_t page = sysconf(_SC_PAGESIZE);
  if (a->bufOff % page || a->iova % page || a->size % page) {
    ThrowRangeError(env, std::string(fn) + ": bufferOffset, iova and size must be multiples of the page size (" +
                             std::to_string(page) + ")");
    return false;
  }
  if (!PinMapping(env, info[first], fn, &a->pin)) return false;
  if (static_cast<uint64_t>(a->bufOff) + static_cast<uint64_t>(a->size) > a->pin.length) {
    UnpinMapping(a->pin.mapping);
    ThrowRangeError(env, std::string(fn) + ": range [" + std::to_string(a->bufOff) + ", " +
                             std::to_string(a->bufOff + a->size) + ") is outside the " +
                             std::to_string(a->pin.length) + "-byte mapping");
    return false;
  }
  return true;
}

// Records a pinned mapping after `doMap` (the ioctl; returns 0 or an errno) succeeded; unpins on any failure.
template <typename F>
Napi::Value MapDma(Napi::Env env, const DmaMapArgs& a, const std::string& what, F&& doMap) {
  std::lock_guard<std::mutex> lock(g_dmaMutex);
  DmaKey key{a.fd, a.ioas, static_cast<uint64_t>(a.iova)};
  if (g_dma.count(key)) {
    UnpinMapping(a.pin.mapping);
    ThrowErrnoMessage(env, EEXIST, "ioctl",
                      "ioctl(" + what + ", iova " + std::to_string(a.iova) + "): already mapped at that iova");
    return Napi::Value();
  }
  int err = doMap();
  if (err != 0) {
    UnpinMapping(a.pin.mapping);
    ThrowErrno(env, err, "ioctl", what + ", iova " + std::to_string(a.iova) + ", size " + std::to_string(a.size));
    return Napi::Value();
  }
  g_dma[key] = DmaRecord{a.pin.mapping, static_cast<uint64_t>(a.size)};
  return env.Undefined();
}

// Finds the mapping (fd, ioas, iova) of exactly `size` bytes, runs `doUnmap` (returns 0 or an errno) and unpins it.
template <typename F>
Napi::Value UnmapDma(Napi::Env env, int fd, uint32_t ioas, int64_t iova, int64_t size, const std::string& what,
                     F&& doUnmap) {
  std::lock_guard<std::mutex> lock(g_dmaMutex);
  auto it = g_dma.find(DmaKey{fd, ioas, static_cast<uint64_t>(iova)});
  const std::string where = what + ", iova " + std::to_string(iova) + ", size " + std::to_string(size);
  if (it == g_dma.end() || it->second.size != static_cast<uint64_t>(size)) {
    ThrowErrnoMessage(env, EINVAL, "ioctl", "ioctl(" + where + "): no DMA mapping made through the addon matches");
    return Napi::Value();
  }
  int err = doUnmap();
  if (err != 0) {
    ThrowErrno(env, err, "ioctl", where);
    return Napi::Value();
  }
  UnpinMapping(it->second.mapping);
  g_dma.erase(it);
  return Napi::Number::New(env, static_cast<double>(size));
}

// vfioIommuMapDma(containerFd, buffer, bufferOffset, iova, size, flags = READ|WRITE)
// `buffer` must be a live mapping from mmap() (memfd or device); [bufferOffset, bufferOffset + size) must lie in it,
// and bufferOffset, iova and size must be page-aligned. The mapping is pinned until vfioIommuUnmapDma/
// vfioCloseContainer.
Napi::Value IommuMapDma(const Napi::CallbackInfo& info) {
  DmaMapArgs a;
  if (!ParseDmaMap(info, "vfioIommuMapDma", 1, &a)) return Napi::Value();
  return MapDma(info.Env(), a, "VFIO_IOMMU_MAP_DMA, " + FdText(a.fd), [&]() {
    vfio_iommu_type1_dma_map map{};
    map.argsz = sizeof map;
    map.flags = static_cast<uint32_t>(a.flags);
    map.vaddr = reinterpret_cast<uint64_t>(a.pin.addr + a.bufOff);
    map.iova = static_cast<uint64_t>(a.iova);
    map.size = static_cast<uint64_t>(a.size);
    return IoctlRetry(a.fd, VFIO_IOMMU_MAP_DMA, &map) < 0 ? errno : 0;
  });
}

// vfioIommuUnmapDma(containerFd, iova, size) -> bytes unmapped. Must match a vfioIommuMapDma exactly.
Napi::Value IommuUnmapDma(const Napi::CallbackInfo& info) {
  const char* fn = "vfioIommuUnmapDma";
  int fd;
  int64_t iova, size;
  if (!GetFd(info, 0, fn, &fd) || !GetInteger(info, 1, fn, "iova", 0, kMaxSafeInteger, &iova) ||
      !GetInteger(info, 2, fn, "size", 1, kMaxSafeInteger, &size)) {
    return Napi::Value();
  }
  return UnmapDma(info.Env(), fd, 0, iova, size, "VFIO_IOMMU_UNMAP_DMA, " + FdText(fd), [&]() {
    vfio_iommu_type1_dma_unmap unmap{};
    unmap.argsz = sizeof unmap;
    unmap.iova = static_cast<uint64_t>(iova);
    unmap.size = static_cast<uint64_t>(size);
    return IoctlRetry(fd, VFIO_IOMMU_UNMAP_DMA, &unmap) < 0 ? errno : 0;
  });
}

// Closes `fd` and unpins every buffer mapped through it (the kernel drops the mappings with the last reference).
Napi::Value CloseAndUnpin(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, fn, &fd)) return Napi::Value();
  if (::close(fd) < 0 && errno != EINTR) {
    ThrowErrno(env, errno, "close", FdText(fd));
    return Napi::Value();
  }
  std::lock_guard<std::mutex> lock(g_dmaMutex);
  UnpinAll(fd, kAnyIoas);
  return env.Undefined();
}

// vfioCloseContainer(containerFd): closes the fd (the kernel drops its DMA mappings once no group uses it) and
// unpins every buffer mapped through it.
Napi::Value CloseContainer(const Napi::CallbackInfo& info) { return CloseAndUnpin(info, "vfioCloseContainer"); }

// ---- iommufd (/dev/iommu) and the VFIO device cdev (/dev/vfio/devices/vfioN) ----
//
// The structs and ioctl numbers of the Linux 6.2+ UAPI (include/uapi/linux/iommufd.h, vfio.h), under our own names
// so the addon builds against older kernel headers (Debian 12 ships 6.1's, without iommufd.h) and newer ones alike.
// Every struct starts with its size; the kernel accepts any size >= the first version's, so these stay valid.

constexpr unsigned kIommufdType = ';';
constexpr unsigned long kIommuDestroy = _IO(kIommufdType, 0x80);
constexpr unsigned long kIommuIoasAlloc = _IO(kIommufdType, 0x81);
constexpr unsigned long kIommuIoasIovaRanges = _IO(kIommufdType, 0x84);
constexpr unsigned long kIommuIoasMap = _IO(kIommufdType, 0x85);
constexpr unsigned long kIommuIoasUnmap = _IO(kIommufdType, 0x86);
constexpr unsigned long kIommuGetHwInfo = _IO(kIommufdType, 0x8a);
constexpr uint32_t kIoasMapFixedIova = 1u << 0;
constexpr uint32_t kIoasMapWriteable = 1u << 1;
constexpr uint32_t kIoasMapReadable = 1u << 2;

struct IommuDestroy {
  uint32_t size;
  uint32_t id;
};
struct IommuIoasAlloc {
  uint32_t size;
  uint32_t flags;
  uint32_t outIoasId;
};
struct IommuIovaRange {
  uint64_t start;
  uint64_t last;
};
struct IommuIoasIovaRanges {
  uint32_t size;
  uint32_t ioasId;
  uint32_t numIovas;
  uint32_t reserved;
  uint64_t allowedIovas;  // user pointer to IommuIovaRange[numIovas]
  uint64_t outIovaAlignment;
};
struct IommuIoasMap {
  uint32_t size;
  uint32_t flags;
  uint32_t ioasId;
  uint32_t reserved;
  uint64_t userVa;
  uint64_t length;
  uint64_t iova;
};
struct IommuIoasUnmap {
  uint32_t size;
  uint32_t ioasId;
  uint64_t iova;
  uint64_t length;
};
struct IommuHwInfo {
  uint32_t size;
  uint32_t flags;
  uint32_t devId;
  uint32_t dataLen;
  uint64_t dataUptr;
  uint32_t outDataType;
  uint32_t reserved;  // out_max_pasid_log2 (u8) + padding: not used
  uint64_t outCapabilities;
};
static_assert(sizeof(IommuIoasIovaRanges) == 32 && sizeof(IommuIoasMap) == 40 && sizeof(IommuIoasUnmap) == 24 &&
                  sizeof(IommuHwInfo) == 40,
              "iommufd UAPI layout");

constexpr unsigned long kVfioDeviceBindIommufd = _IO(VFIO_TYPE, VFIO_BASE + 18);
constexpr unsigned long kVfioDeviceAttachIommufdPt = _IO(VFIO_TYPE, VFIO_BASE + 19);
constexpr unsigned long kVfioDeviceDetachIommufdPt = _IO(VFIO_TYPE, VFIO_BASE + 20);
struct VfioDeviceBindIommufd {
  uint32_t argsz;
  uint32_t flags;
  int32_t iommufd;
  uint32_t outDevid;
};
struct VfioDeviceAttachIommufdPt {
  uint32_t argsz;
  uint32_t flags;
  uint32_t ptId;
};
struct VfioDeviceDetachIommufdPt {
  uint32_t argsz;
  uint32_t flags;
};

// open(path, O_RDWR | O_CLOEXEC) -> fd, or throws with the path.
Napi::Value OpenNode(const Napi::CallbackInfo& info, const char* fn, const char* defaultPath) {
  Napi::Env env = info.Env();
  std::string path = defaultPath ? defaultPath : "";
  if ((!defaultPath || (info.Length() > 0 && !info[0].IsUndefined())) &&
      !GetString(info, 0, fn, "path", PATH_MAX - 1, &path)) {
    return Napi::Value();
  }
  if (path.empty()) {
    ThrowInvalidValue(env, std::string(fn) + ": \"path\" must not be empty");
    return Napi::Value();
  }
  int fd = OpenRdwrOrThrow(env, path);
  if (fd < 0) return Napi::Value();
  return Napi::Number::New(env, fd);
}

// iommufdOpen(path = '/dev/iommu') -> fd (close-on-exec)
Napi::Value IommufdOpen(const Napi::CallbackInfo& info) { return OpenNode(info, "iommufdOpen", "/dev/iommu"); }

// iommufdClose(iommufd): closes it and unpins every buffer mapped into its IOASes.
Napi::Value IommufdClose(const Napi::CallbackInfo& info) { return CloseAndUnpin(info, "iommufdClose"); }

// iommufdIoasAlloc(iommufd) -> IOAS id
Napi::Value IommufdIoasAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "iommufdIoasAlloc", &fd)) return Napi::Value();
  IommuIoasAlloc cmd{};
  cmd.size = sizeof cmd;
  if (IoctlOrThrow(env, fd, kIommuIoasAlloc, &cmd, "IOMMU_IOAS_ALLOC") < 0) return Napi::Value();
  return Napi::Number::New(env, cmd.outIoasId);
}

// iommufdDestroy(iommufd, id): IOMMU_DESTROY of an object (IOAS, hw pagetable). Destroying an IOAS unmaps and
// unpins what was mapped into it; EBUSY while a device is still attached to it.
Napi::Value IommufdDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t id;
  if (!GetFd(info, 0, "iommufdDestroy", &fd) || !GetInteger(info, 1, "iommufdDestroy", "id", 1, UINT32_MAX, &id)) {
    return Napi::Value();
  }
  IommuDestroy cmd{};
  cmd.size = sizeof cmd;
  cmd.id = static_cast<uint32_t>(id);
  if (IoctlOrThrow(env, fd, kIommuDestroy, &cmd, "IOMMU_DESTROY " + std::to_string(id)) < 0) return Napi::Value();
  std::lock_guard<std::mutex> lock(g_dmaMutex);
  UnpinAll(fd, id);
  return env.Undefined();
}

// iommufdIoasIovaRanges(iommufd, ioasId) -> { ranges: [{start, last}], alignment }: the IOVAs usable for mapping
// (narrowed by the devices attached so far).
Napi::Value IommufdIoasIovaRanges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "iommufdIoasIovaRanges";
  int fd;
  int64_t ioas;
  if (!GetFd(info, 0, fn, &fd) || !GetInteger(info, 1, fn, "ioasId", 1, UINT32_MAX, &ioas)) return Napi::Value();
  std::vector<IommuIovaRange> ranges(8);
  IommuIoasIovaRanges cmd{};
  for (int attempt = 0; attempt < 3; attempt++) {
    cmd = IommuIoasIovaRanges{};
    cmd.size = sizeof cmd;
    cmd.ioasId = static_cast<uint32_t>(ioas);
    cmd.numIovas = static_cast<uint32_t>(ranges.size());
    cmd.allowedIovas = reinterpret_cast<uint64_t>(ranges.data());
    if (IoctlRetry(fd, kIommuIoasIovaRanges, &cmd) == 0) break;
    // EMSGSIZE: the kernel says in numIovas how many ranges there are; ask again with room for them.
    if (errno != EMSGSIZE || cmd.numIovas <= ranges.size() || cmd.numIovas > 4096 || attempt == 2) {
      ThrowErrno(env, errno, "ioctl", "IOMMU_IOAS_IOVA_RANGES, ioas " + std::to_string(ioas) + ", " + FdText(fd));
      return Napi::Value();
    }
    ranges.resize(cmd.numIovas);
  }
  Napi::Object out = Napi::Object::New(env);
  Napi::Array list = Napi::Array::New(env);
  for (uint32_t i = 0; i < cmd.numIovas && i < ranges.size(); i++) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("start", U64(env, ranges[i].start));
    r.Set("last", U64(env, ranges[i].last));
    list.Set(i, r);
  }
  out.Set("ranges", list);
  out.Set("alignment", U64(env, cmd.outIovaAlignment));
  return out;
}

// iommufdIoasMap(iommufd, ioasId, buffer, bufferOffset, iova, size, flags = READ|WRITE): IOMMU_IOAS_MAP at a fixed
// iova; same buffer rules and pinning as vfioIommuMapDma (flags are VFIO_DMA_MAP_FLAG_READ/WRITE).
Napi::Value IommufdIoasMap(const Napi::CallbackInfo& info) {
  DmaMapArgs a;
  if (!ParseDmaMap(info, "iommufdIoasMap", 2, &a)) return Napi::Value();
  return MapDma(info.Env(), a, "IOMMU_IOAS_MAP, ioas " + std::to_string(a.ioas) + ", " + FdText(a.fd), [&]() {
    IommuIoasMap cmd{};
    cmd.size = sizeof cmd;
    cmd.flags = kIoasMapFixedIova | ((a.flags & VFIO_DMA_MAP_FLAG_READ) ? kIoasMapReadable : 0) |
                ((a.flags & VFIO_DMA_MAP_FLAG_WRITE) ? kIoasMapWriteable : 0);
    cmd.ioasId = a.ioas;
    cmd.userVa = reinterpret_cast<uint64_t>(a.pin.addr + a.bufOff);
    cmd.length = static_cast<uint64_t>(a.size);
    cmd.iova = static_cast<uint64_t>(a.iova);
    return IoctlRetry(a.fd, kIommuIoasMap, &cmd) < 0 ? errno : 0;
  });
}

// iommufdIoasUnmap(iommufd, ioasId, iova, size) -> bytes unmapped. Must match an iommufdIoasMap exactly.
Napi::Value IommufdIoasUnmap(const Napi::CallbackInfo& info) {
  const char* fn = "iommufdIoasUnmap";
  int fd;
  int64_t ioas, iova, size;
  if (!GetFd(info, 0, fn, &fd) || !GetInteger(info, 1, fn, "ioasId", 1, UINT32_MAX, &ioas) ||
      !GetInteger(info, 2, fn, "iova", 0, kMaxSafeInteger, &iova) ||
      !GetInteger(info, 3, fn, "size", 1, kMaxSafeInteger, &size)) {
    return Napi::Value();
  }
  const std::string what = "IOMMU_IOAS_UNMAP, ioas " + std::to_string(ioas) + ", " + FdText(fd);
  return UnmapDma(info.Env(), fd, static_cast<uint32_t>(ioas), iova, size, what, [&]() {
    IommuIoasUnmap cmd{};
    cmd.size = sizeof cmd;
    cmd.ioasId = static_cast<uint32_t>(ioas);
    cmd.iova = static_cast<uint64_t>(iova);
    cmd.length = static_cast<uint64_t>(size);
    return IoctlRetry(fd, kIommuIoasUnmap, &cmd) < 0 ? errno : 0;
  });
}

// iommufdGetHwInfo(iommufd, devId) -> { type, capabilities, dataLength }: which IOMMU the bound device sits behind
// (type 1 = Intel VT-d, 2 = ARM SMMUv3) and its iommufd capability bits (bit 0: dirty tracking).
Napi::Value IommufdGetHwInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t devId;
  if (!GetFd(info, 0, "iommufdGetHwInfo", &fd) ||
      !GetInteger(info, 1, "iommufdGetHwInfo", "devId", 1, UINT32_MAX, &devId)) {
    return Napi::Value();
  }
  IommuHwInfo cmd{};
  cmd.size = sizeof cmd;
  cmd.devId = static_cast<uint32_t>(devId);
  if (IoctlOrThrow(env, fd, kIommuGetHwInfo, &cmd, "IOMMU_GET_HW_INFO, dev " + std::to_string(devId)) < 0) {
    return Napi::Value();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("type", Napi::Number::New(env, cmd.outDataType));
  out.Set("capabilities", U64(env, cmd.outCapabilities));
  out.Set("dataLength", Napi::Number::New(env, cmd.dataLen));
  return out;
}

// vfioOpenDeviceCdev(path) -> device fd (close-on-exec), e.g. '/dev/vfio/devices/vfio0'. Usable for nothing but
// VFIO_DEVICE_BIND_IOMMUFD until bound.
Napi::Value OpenDeviceCdev(const Napi::CallbackInfo& info) { return OpenNode(info, "vfioOpenDeviceCdev", nullptr); }

// vfioDeviceBindIommufd(deviceFd, iommufd) -> device id in that iommufd. Fails with EBUSY while the device's group
// is open through the legacy API (and the other way round), and EPERM when the group is not viable.
Napi::Value DeviceBindIommufd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd, iommufd;
  if (!GetFd(info, 0, "vfioDeviceBindIommufd", &fd) || !GetFd(info, 1, "vfioDeviceBindIommufd", &iommufd)) {
    return Napi::Value();
  }
  VfioDeviceBindIommufd cmd{};
  cmd.argsz = sizeof cmd;
  cmd.iommufd = iommufd;
  if (IoctlRetry(fd, kVfioDeviceBindIommufd, &cmd) < 0) {
    ThrowErrno(env, errno, "ioctl", "VFIO_DEVICE_BIND_IOMMUFD, " + FdText(fd) + ", iommufd " + FdText(iommufd));
    return Napi::Value();
  }
  return Napi::Number::New(env, cmd.outDevid);
}

// vfioDeviceAttachIommufdPt(deviceFd, ptId) -> the id now attached (the hw pagetable the kernel made for an IOAS).
Napi::Value DeviceAttachIommufdPt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t pt;
  if (!GetFd(info, 0, "vfioDeviceAttachIommufdPt", &fd) ||
      !GetInteger(info, 1, "vfioDeviceAttachIommufdPt", "ptId", 1, UINT32_MAX, &pt)) {
    return Napi::Value();
  }
  VfioDeviceAttachIommufdPt cmd{};
  cmd.argsz = sizeof cmd;
  cmd.ptId = static_cast<uint32_t>(pt);
  const std::string what = "VFIO_DEVICE_ATTACH_IOMMUFD_PT " + std::to_string(pt);
  if (IoctlOrThrow(env, fd, kVfioDeviceAttachIommufdPt, &cmd, what) < 0) return Napi::Value();
  return Napi::Number::New(env, cmd.ptId);
}

// vfioDeviceDetachIommufdPt(deviceFd): the device is blocked from DMA until attached again.
Napi::Value DeviceDetachIommufdPt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "vfioDeviceDetachIommufdPt", &fd)) return Napi::Value();
  VfioDeviceDetachIommufdPt cmd{};
  cmd.argsz = sizeof cmd;
  if (IoctlOrThrow(env, fd, kVfioDeviceDetachIommufdPt, &cmd, "VFIO_DEVICE_DETACH_IOMMUFD_PT") < 0) {
    return Napi::Value();
  }
  return env.Undefined();
}

}  // namespace

void InitVfio(Napi::Env env, Napi::Object exports) {
  exports.Set("vfioOpenContainer", Napi::Function::New(env, OpenContainer, "vfioOpenContainer"));
  exports.Set("vfioCheckExtension", Napi::Function::New(env, CheckExtension, "vfioCheckExtension"));
  exports.Set("vfioSetIommu", Napi::Function::New(env, SetIommu, "vfioSetIommu"));
  exports.Set("vfioIommuGetInfo", Napi::Function::New(env, IommuGetInfo, "vfioIommuGetInfo"));
  exports.Set("vfioOpenGroup", Napi::Function::New(env, OpenGroup, "vfioOpenGroup"));
  exports.Set("vfioGroupGetStatus", Napi::Function::New(env, GroupGetStatus, "vfioGroupGetStatus"));
  exports.Set("vfioGroupSetContainer", Napi::Function::New(env, GroupSetContainer, "vfioGroupSetContainer"));
  exports.Set("vfioGroupUnsetContainer", Napi::Function::New(env, GroupUnsetContainer, "vfioGroupUnsetContainer"));
  exports.Set("vfioGroupGetDeviceFd", Napi::Function::New(env, GroupGetDeviceFd, "vfioGroupGetDeviceFd"));
  exports.Set("vfioDeviceGetInfo", Napi::Function::New(env, DeviceGetInfo, "vfioDeviceGetInfo"));
  exports.Set("vfioDeviceGetRegionInfo", Napi::Function::New(env, DeviceGetRegionInfo, "vfioDeviceGetRegionInfo"));
  exports.Set("vfioDeviceGetIrqInfo", Napi::Function::New(env, DeviceGetIrqInfo, "vfioDeviceGetIrqInfo"));
  exports.Set("vfioDeviceReset", Napi::Function::New(env, DeviceReset, "vfioDeviceReset"));
  exports.Set("vfioRegionRead", Napi::Function::New(env, RegionRead, "vfioRegionRead"));
  exports.Set("vfioRegionWrite", Napi::Function::New(env, RegionWrite, "vfioRegionWrite"));
  exports.Set("vfioIommuMapDma", Napi::Function::New(env, IommuMapDma, "vfioIommuMapDma"));
  exports.Set("vfioIommuUnmapDma", Napi::Function::New(env, IommuUnmapDma, "vfioIommuUnmapDma"));
  exports.Set("vfioCloseContainer", Napi::Function::New(env, CloseContainer, "vfioCloseContainer"));
  exports.Set("iommufdOpen", Napi::Function::New(env, IommufdOpen, "iommufdOpen"));
  exports.Set("iommufdClose", Napi::Function::New(env, IommufdClose, "iommufdClose"));
  exports.Set("iommufdIoasAlloc", Napi::Function::New(env, IommufdIoasAlloc, "iommufdIoasAlloc"));
  exports.Set("iommufdDestroy", Napi::Function::New(env, IommufdDestroy, "iommufdDestroy"));
  exports.Set("iommufdIoasIovaRanges", Napi::Function::New(env, IommufdIoasIovaRanges, "iommufdIoasIovaRanges"));
  exports.Set("iommufdIoasMap", Napi::Function::New(env, IommufdIoasMap, "iommufdIoasMap"));
  exports.Set("iommufdIoasUnmap", Napi::Function::New(env, IommufdIoasUnmap, "iommufdIoasUnmap"));
  exports.Set("iommufdGetHwInfo", Napi::Function::New(env, IommufdGetHwInfo, "iommufdGetHwInfo"));
  exports.Set("vfioOpenDeviceCdev", Napi::Function::New(env, OpenDeviceCdev, "vfioOpenDeviceCdev"));
  exports.Set("vfioDeviceBindIommufd", Napi::Function::New(env, DeviceBindIommufd, "vfioDeviceBindIommufd"));
  exports.Set("vfioDeviceAttachIommufdPt",
              Napi::Function::New(env, DeviceAttachIommufdPt, "vfioDeviceAttachIommufdPt"));
  exports.Set("vfioDeviceDetachIommufdPt",
              Napi::Function::New(env, DeviceDetachIommufdPt, "vfioDeviceDetachIommufdPt"));
  exports.Set("VFIO_API_VERSION", Napi::Number::New(env, VFIO_API_VERSION));
}

}  // namespace vfiod
