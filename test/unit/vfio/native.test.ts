/**
 * The addon's VFIO entry points without VFIO hardware: argument validation, errors with errno/code/syscall and
 * context, DMA pin bookkeeping (a failed map unpins), the TS wrapper's error context. The real ioctls run in the
 * QEMU guest (test/guest/vfio-passthrough.test.ts).
 */
import { closeSync, mkdirSync, openSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { native, PROT_READ, PROT_WRITE } from '../../../src/native/index.js';
import { assertBdf, iommuGroupOf, openVfioDevice, VfioGroup } from '../../../src/vfio/index.js';
import { NativeVfioProber, type VfioProber } from '../../../src/vfio/prober.js';
import { temporaryDir } from '../../helpers/common.js';

describe('native VFIO entry points', () => {
  it('validates fds, indexes and names before any syscall', () => {
    expect(() => native.vfioDeviceGetInfo(-1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => native.vfioDeviceGetInfo('3' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => native.vfioDeviceGetRegionInfo(0, 1.5)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => native.vfioDeviceGetIrqInfo(0, -1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => native.vfioGroupGetDeviceFd(0, '')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => native.vfioGroupGetDeviceFd(0, 'a\0b')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => native.vfioOpenGroup(12 as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => native.vfioRegionRead(0, 0, [1] as unknown as Uint8Array)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => native.vfioIommuUnmapDma(0, 0, 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(native.VFIO_API_VERSION).toBe(0);
  });

  it('reports open failures with errno, code, syscall and the path', () => {
    let error: any; // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
      native.vfioOpenContainer('/nonexistent/vfio');
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'open' });
    expect(error.message).toContain('/nonexistent/vfio');
  });

  it('an ioctl on a non-VFIO fd fails with ENOTTY naming the ioctl, fd and region', () => {
    const fd = openSync('/dev/null', 'r+');
    try {
      expect(() => native.vfioDeviceGetRegionInfo(fd, 7)).toThrow(
        expect.objectContaining({ code: 'ENOTTY', syscall: 'ioctl', message: expect.stringContaining(`VFIO_DEVICE_GET_REGION_INFO, fd ${fd}, region 7`) }),
      );
      expect(() => native.vfioGroupGetStatus(fd)).toThrow(expect.objectContaining({ code: 'ENOTTY' }));
      expect(() => native.vfioDeviceReset(fd)).toThrow(expect.objectContaining({ code: 'ENOTTY' }));
      expect(() => native.vfioCheckExtension(fd, 3)).toThrow(expect.objectContaining({ code: 'ENOTTY' }));
      // a closed fd: EBADF
      expect(() => native.vfioDeviceGetInfo(1_000_000)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    } finally {
      closeSync(fd);
    }
  });

  it('region read/write are pread/pwrite on the fd at the absolute offset', () => {
    const fd = native.memfdCreate('vfio-region', 8192);
    try {
      const data = new Uint8Array([1, 2, 3, 4]);
      expect(native.vfioRegionWrite(fd, 4096 + 6, data)).toBe(4);
      const back = new Uint8Array(4);
      expect(native.vfioRegionRead(fd, 4096 + 6, back)).toBe(4);
      expect([...back]).toEqual([1, 2, 3, 4]);
      // past the end: short read
      expect(native.vfioRegionRead(fd, 8190, new Uint8Array(4))).toBe(2);
    } finally {
      native.close(fd);
    }
  });

  it('DMA map validates the buffer and alignment, and a failed map leaves the buffer unpinned', () => {
    const memfd = native.memfdCreate('vfio-dma', 3 * 4096);
    const buffer = native.mmap(memfd, 0, 3 * 4096, PROT_READ | PROT_WRITE);
    native.close(memfd);
    const devnull = openSync('/dev/null', 'r+');
    try {
      expect(() => native.vfioIommuMapDma(devnull, new ArrayBuffer(4096), 0, 0, 4096)).toThrow(
        expect.objectContaining({ code: 'EINVAL', syscall: 'mmap' }),
      );
      expect(() => native.vfioIommuMapDma(devnull, buffer, 100, 0, 4096)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => native.vfioIommuMapDma(devnull, buffer, 0, 0, 4 * 4096)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => native.vfioIommuMapDma(devnull, buffer, 0, 0x100000, 4096, 4)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      // the kernel refuses (not a container): ENOTTY, and the pin taken for the call is dropped again
      expect(() => native.vfioIommuMapDma(devnull, buffer, 0, 0x100000, 4096)).toThrow(
        expect.objectContaining({ code: 'ENOTTY', syscall: 'ioctl', message: expect.stringContaining('VFIO_IOMMU_MAP_DMA') }),
      );
      expect(() => native.vfioIommuUnmapDma(devnull, 0x100000, 4096)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    } finally {
      closeSync(devnull);
    }
    native.munmap(buffer); // not EBUSY: nothing pins it
    expect(native.isMapped(buffer)).toBe(false);
  });
});

describe('src/vfio wrapper', () => {
  it('checks BDFs and group names', () => {
    expect(() => assertBdf('01:00.1')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => assertBdf('0000:01:00.1')).not.toThrow();
    expect(() => VfioGroup.open('../x')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
  });

  it('reads the IOMMU group from the sysfs link and refuses a link that is not a decimal group number', () => {
    const sys = temporaryDir('vfiod-iommu-group-');
    try {
      const devices = path.join(sys, 'bus/pci/devices');
      mkdirSync(devices, { recursive: true });
      const links: Array<[string, string]> = [['0000:05:00.0', '17'], ['0000:05:00.1', '0x1f'], ['0000:05:00.2', '1e3']];
      for (const [bdf, group] of links) {
        mkdirSync(path.join(devices, bdf));
        symlinkSync(`../../../../kernel/iommu_groups/${group}`, path.join(devices, bdf, 'iommu_group'));
      }
      expect(iommuGroupOf('0000:05:00.0', sys)).toBe(17);
      for (const bdf of ['0000:05:00.1', '0000:05:00.2']) {
        expect(() => iommuGroupOf(bdf, sys)).toThrow(
          expect.objectContaining({ bdf, message: expect.stringContaining(`${bdf}: unexpected iommu_group link`) }),
        );
      }
    } finally {
      rmSync(sys, { recursive: true, force: true });
    }
  });

  it('errors name the BDF and group', () => {
    expect(() => iommuGroupOf('0000:77:00.0', '/nonexistent-sys')).toThrow(
      expect.objectContaining({ code: 'ENOENT', bdf: '0000:77:00.0', message: expect.stringContaining('0000:77:00.0: no IOMMU group') }),
    );
    expect(() => VfioGroup.open(4242, { devRoot: '/nonexistent-dev' })).toThrow(
      expect.objectContaining({ code: 'ENOENT', syscall: 'open', group: 4242, message: expect.stringMatching(/^group 4242: open\(/) }),
    );
  });

  it('the prober the daemon and the CLI give the manager works on their roots', async () => {
    const prober: VfioProber = new NativeVfioProber({ sysfsRoot: '/nonexistent-sys', devRoot: '/nonexistent-dev' });
    await expect(prober.probe('0000:01:00.1')).rejects.toMatchObject({ code: 'ENOENT', bdf: '0000:01:00.1' });
  });

  it('the prober rejects with the context of the failure', async () => {
    await expect(new NativeVfioProber({ sysfsRoot: '/nonexistent-sys' }).probe('0000:01:00.1')).rejects.toMatchObject({
      code: 'ENOENT',
      bdf: '0000:01:00.1',
    });
    expect(() => openVfioDevice('bogus')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
  });
});
