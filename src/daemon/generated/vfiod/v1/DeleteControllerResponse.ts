// Original file: /work/wt/api-types/proto/vfiod/v1/controllers.proto


export interface DeleteControllerResponse {
}

export interface DeleteControllerResponse__Output {
}
