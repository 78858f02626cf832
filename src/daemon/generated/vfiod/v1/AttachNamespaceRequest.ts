// Original file: proto/vfiod/v1/controllers.proto


export interface AttachNamespaceRequest {
  /**
   * the controller
   */
  'id'?: (string);
  /**
   * namespace URI, as in ControllerSpec.namespaces
   */
  'uri'?: (string);
  /**
   * 1..1024; 0 = the lowest free NSID
   */
  'nsid'?: (number);
  /**
   * AIP-155, as CreateController: a retry with the same id and request answers with the first call's response (an
   * attach without an NSID would otherwise attach the disk twice).
   */
  'requestId'?: (string);
}

export interface AttachNamespaceRequest__Output {
  /**
   * the controller
   */
  'id': (string);
  /**
   * namespace URI, as in ControllerSpec.namespaces
   */
  'uri': (string);
  /**
   * 1..1024; 0 = the lowest free NSID
   */
  'nsid': (number);
  /**
   * AIP-155, as CreateController: a retry with the same id and request answers with the first call's response (an
   * attach without an NSID would otherwise attach the disk twice).
   */
  'requestId': (string);
}
