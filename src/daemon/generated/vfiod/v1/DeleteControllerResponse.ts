// Original file: proto/vfiod/v1/controllers.proto


export interface DeleteControllerResponse {
}

export interface DeleteControllerResponse__Output {
}
