// Original file: proto/vfiod/v1/attachments.proto


export interface PrepareDeviceResult {
  'bdf'?: (string);
  'changed'?: (boolean);
  'vfioGroupDev'?: (string);
  'vfioCdev'?: (string);
}

export interface PrepareDeviceResult__Output {
  'bdf': (string);
  'changed': (boolean);
  'vfioGroupDev': (string);
  'vfioCdev': (string);
}
