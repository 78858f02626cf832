// Original file: proto/vfiod/v1/controllers.proto


export interface SwapNamespaceBackingRequest {
  /**
   * the controller
   */
  'id'?: (string);
  'nsid'?: (number);
  /**
   * The new backing, as in ControllerSpec.namespaces: at least as large as the namespace, with its block size. A
   * file: URI without size= gets the namespace's size (a new file is created that large). NVMe/TCP: the same size.
   */
  'uri'?: (string);
  /**
   * The new backing already holds the namespace's data (e.g. a replica): nothing is copied, only the switch is made.
   */
  'alreadyCopied'?: (boolean);
}

export interface SwapNamespaceBackingRequest__Output {
  /**
   * the controller
   */
  'id': (string);
  'nsid': (number);
  /**
   * The new backing, as in ControllerSpec.namespaces: at least as large as the namespace, with its block size. A
   * file: URI without size= gets the namespace's size (a new file is created that large). NVMe/TCP: the same size.
   */
  'uri': (string);
  /**
   * The new backing already holds the namespace's data (e.g. a replica): nothing is copied, only the switch is made.
   */
  'alreadyCopied': (boolean);
}
