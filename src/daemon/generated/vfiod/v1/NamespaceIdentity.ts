// Original file: proto/vfiod/v1/controllers.proto


/**
 * What the guest sees of one namespace slot (its NSID), whatever backs it. In a spec: empty / 0 fields keep the
 * persisted (or generated) value. In NamespaceInfo: the values in effect.
 */
export interface NamespaceIdentity {
  /**
   * the slot: an NSID of spec.namespaces (1..n unless spec.namespace_nsids says otherwise)
   */
  'nsid'?: (number);
  /**
   * 32 hex digits, not all zero
   */
  'nguid'?: (string);
  /**
   * 16 hex digits, not all zero
   */
  'eui64'?: (string);
  /**
   * RFC 4122 form, not nil
   */
  'uuid'?: (string);
  /**
   * LBA data size: 512 or 4096 (the URI's block-size, if it has one, must agree)
   */
  'blockSize'?: (number);
}

/**
 * What the guest sees of one namespace slot (its NSID), whatever backs it. In a spec: empty / 0 fields keep the
 * persisted (or generated) value. In NamespaceInfo: the values in effect.
 */
export interface NamespaceIdentity__Output {
  /**
   * the slot: an NSID of spec.namespaces (1..n unless spec.namespace_nsids says otherwise)
   */
  'nsid': (number);
  /**
   * 32 hex digits, not all zero
   */
  'nguid': (string);
  /**
   * 16 hex digits, not all zero
   */
  'eui64': (string);
  /**
   * RFC 4122 form, not nil
   */
  'uuid': (string);
  /**
   * LBA data size: 512 or 4096 (the URI's block-size, if it has one, must agree)
   */
  'blockSize': (number);
}
