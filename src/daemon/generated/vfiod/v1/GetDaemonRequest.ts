// Original file: /work/wt/api-types/proto/vfiod/v1/daemon.proto


export interface GetDaemonRequest {
}

export interface GetDaemonRequest__Output {
}
