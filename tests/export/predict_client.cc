// TF Serving's Predict path, on the TensorFlow wheel's own C++ API: what the
// model server does with a PredictRequest (predict_util.cc), minus gRPC.
//
//   predict_client EXPORT_DIR SIGNATURE OUT_DIR [ALIAS=TENSOR_PROTO_FILE ...]
//
// Loads EXPORT_DIR with LoadSavedModel (tag "serve"), checks the request's
// inputs against the signature as the server does, fills omitted inputs
// from SignatureDef.defaults (saved_model::GetInputValues, servers >= 2.14),
// runs every signature output in one Session::Run, and writes each output as
// a serialized TensorProto to OUT_DIR/ALIAS.pb. A failed call prints
// "<CODE>: <message>" (INVALID_ARGUMENT, ...) on stderr and exits with 3.

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tensorflow/cc/saved_model/loader.h"
#include "tensorflow/cc/saved_model/util.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"

namespace {

int Fail(const absl::Status& status) {
  std::cerr << absl::StatusCodeToString(status.code()) << ": " << status.message() << std::endl;
  return 3;
}

// The model server's input check (predict_util.cc): no unknown aliases, and
// all inputs present unless the signature has defaults.
absl::Status CheckInputs(const tensorflow::SignatureDef& signature,
                         const google::protobuf::Map<std::string, tensorflow::TensorProto>& inputs) {
  if (inputs.size() > signature.inputs().size() ||
      (inputs.size() < signature.inputs().size() && signature.defaults().empty())) {
    std::ostringstream message;
    message << "input size does not match signature: " << inputs.size() << "!="
            << signature.inputs().size();
    return absl::InvalidArgumentError(message.str());
  }
  for (const auto& input : inputs) {
    if (signature.inputs().find(input.first) == signature.inputs().end()) {
      return absl::InvalidArgumentError("input tensor alias not found in signature: " +
                                        input.first);
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: predict_client EXPORT_DIR SIGNATURE OUT_DIR [ALIAS=FILE ...]"
              << std::endl;
    return 2;
  }
  const std::string export_dir = argv[1], signature_name = argv[2], out_dir = argv[3];

  tensorflow::SavedModelBundle bundle;
  absl::Status status = tensorflow::LoadSavedModel(
      tensorflow::SessionOptions(), tensorflow::RunOptions(), export_dir,
      {"serve"}, &bundle);
  if (!status.ok()) return Fail(status);
  const auto& signatures = bundle.GetSignatures();
  auto found = signatures.find(signature_name);
  if (found == signatures.end()) {
    return Fail(absl::FailedPreconditionError("Serving signature key \"" + signature_name +
                                              "\" not found."));
  }
  const tensorflow::SignatureDef& signature = found->second;

  google::protobuf::Map<std::string, tensorflow::TensorProto> request;
  for (int i = 4; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t equals = arg.find('=');
    std::ifstream file(arg.substr(equals + 1), std::ios::binary);
    std::stringstream bytes;
    bytes << file.rdbuf();
    if (equals == std::string::npos || !request[arg.substr(0, equals)].ParseFromString(bytes.str())) {
      return Fail(absl::InvalidArgumentError("cannot read the TensorProto in " + arg));
    }
  }
  status = CheckInputs(signature, request);
  if (!status.ok()) return Fail(status);

  // (feed tensor name, value) for every signature input: the request's,
  // then the defaults for those it omits.
  std::vector<std::pair<std::string, tensorflow::Tensor>> inputs;
  status = tensorflow::saved_model::GetInputValues(signature, request, inputs);
  if (!status.ok()) return Fail(status);

  std::vector<std::string> aliases, names;
  for (const auto& output : signature.outputs()) {
    aliases.push_back(output.first);
    names.push_back(output.second.name());
  }
  std::vector<tensorflow::Tensor> outputs;
  tensorflow::RunMetadata metadata;
  status = bundle.session->Run(tensorflow::RunOptions(), inputs, names, {}, &outputs, &metadata);
  if (!status.ok()) return Fail(status);
  for (size_t i = 0; i < outputs.size(); ++i) {
    tensorflow::TensorProto proto;
    outputs[i].AsProtoField(&proto);
    std::ofstream(out_dir + "/" + aliases[i] + ".pb", std::ios::binary) << proto.SerializeAsString();
  }
  return 0;
}
