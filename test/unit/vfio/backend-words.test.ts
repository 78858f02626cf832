/**
 * One vocabulary for the VFIO backend (src/util/vfio-backend.ts): what vfiod's own open picks and its prober reports
 * are the words the control API, the CLI and static configurations take ('group', 'iommufd'), not a third one.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, expectTypeOf, it } from 'vitest';

import type { VfioProbeResult } from '../../../src/devices/probe.js';
import { checkVfioBackendChoice, type VfioBackend as HypervisorVfioBackend, type VfioBackendChoice as HypervisorVfioBackendChoice } from '../../../src/hypervisor/vfio-backend.js';
import { chooseVfioBackend, openVfioDevice, type VfioBackend, type VfioBackendChoice } from '../../../src/vfio/index.js';
import { temporaryDir } from '../../helpers/common.js';

const BDF = '0000:05:00.4';

describe('VFIO backend words', () => {
  it('src/vfio, src/hypervisor and the prober contract share one type', () => {
    expectTypeOf<VfioBackend>().toEqualTypeOf<HypervisorVfioBackend>();
    expectTypeOf<VfioBackendChoice>().toEqualTypeOf<HypervisorVfioBackendChoice>();
    expectTypeOf<NonNullable<VfioProbeResult['backend']>>().toEqualTypeOf<VfioBackend>();
  });

  it("auto without iommufd picks 'group', a word the hypervisor side accepts", () => {
    const root = temporaryDir('vfiod-backend-words-');
    try {
      const sysfsRoot = path.join(root, 'sys');
      const devRoot = path.join(root, 'dev');
      // a function on vfio-pci with a cdev, on a host without /dev/iommu
      mkdirSync(path.join(sysfsRoot, 'bus', 'pci', 'devices', BDF, 'vfio-dev', 'vfio0'), { recursive: true });
      mkdirSync(path.join(devRoot, 'vfio', 'devices'), { recursive: true });
      writeFileSync(path.join(devRoot, 'vfio', 'devices', 'vfio0'), '');
      const picked = chooseVfioBackend(BDF, { sysfsRoot, devRoot });
      expect(picked).toBe('group');
      expect(checkVfioBackendChoice(picked, 'ctx')).toBe('group');
      // with /dev/iommu it is iommufd, also a shared word
      writeFileSync(path.join(devRoot, 'iommu'), '');
      expect(checkVfioBackendChoice(chooseVfioBackend(BDF, { sysfsRoot, devRoot }), 'ctx')).toBe('iommufd');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("the old word 'legacy' is refused by name, listing the words taken", () => {
    expect(() => openVfioDevice(BDF, { backend: 'legacy' as VfioBackendChoice })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', bdf: BDF, message: expect.stringContaining('(auto, iommufd, group)') }),
    );
  });
});
