// Original file: proto/vfiod/v1/controllers.proto


export interface ListControllersRequest {
}

export interface ListControllersRequest__Output {
}
