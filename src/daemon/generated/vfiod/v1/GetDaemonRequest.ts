// Original file: proto/vfiod/v1/daemon.proto


export interface GetDaemonRequest {
}

export interface GetDaemonRequest__Output {
}
