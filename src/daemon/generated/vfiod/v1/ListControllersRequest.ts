// Original file: /work/wt/api-types/proto/vfiod/v1/controllers.proto


export interface ListControllersRequest {
}

export interface ListControllersRequest__Output {
}
