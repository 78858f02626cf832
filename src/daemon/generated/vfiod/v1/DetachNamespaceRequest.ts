// Original file: proto/vfiod/v1/controllers.proto


/**
 * Commands the guest already started on the namespace complete; new ones fail with Invalid Namespace or Format.
 * The response comes once the namespace is flushed and closed.
 */
export interface DetachNamespaceRequest {
  'id'?: (string);
  'nsid'?: (number);
}

/**
 * Commands the guest already started on the namespace complete; new ones fail with Invalid Namespace or Format.
 * The response comes once the namespace is flushed and closed.
 */
export interface DetachNamespaceRequest__Output {
  'id': (string);
  'nsid': (number);
}
