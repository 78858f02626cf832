// Original file: proto/vfiod/v1/operations.proto


export interface ListOperationsRequest {
  /**
   * empty = every VM
   */
  'vmId'?: (string);
  /**
   * only operations that are not done
   */
  'runningOnly'?: (boolean);
  /**
   * most operations returned (default and limit 1000)
   */
  'pageSize'?: (number);
}

export interface ListOperationsRequest__Output {
  /**
   * empty = every VM
   */
  'vmId': (string);
  /**
   * only operations that are not done
   */
  'runningOnly': (boolean);
  /**
   * most operations returned (default and limit 1000)
   */
  'pageSize': (number);
}
