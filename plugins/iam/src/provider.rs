//! The running IAM service: reads the query request, runs the operation in the account's
//! global scope (region `us-east-1`), writes through the state cell.

use std::any::Any;

use async_trait::async_trait;
use cryopod::plugin::CellProvider;
use cryopod::protocol::query::{self, QueryRequest};
use cryopod::{AwsError, AwsRequest, Body, Scope, Service, ServiceContext, StateCell};

use crate::api::{self, Ctx};
use crate::state::IamState;

/// Largest request accepted: a 128 KiB policy document form-encoded (up to 3 bytes per
/// character), with room for the other parameters.
const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// The region IAM's resources are kept in, whatever region a request names.
pub const HOME_REGION: &str = "us-east-1";

/// Operations of the IAM API (botocore's model) that this emulator answers with
/// `UnsupportedOperation` naming them.
pub const UNSUPPORTED: &[&str] = &[
    "AcceptDelegationRequest",
    "AcquireRole",
    "AddClientIDToOpenIDConnectProvider",
    "AssociateDelegationRequest",
    "CreateDelegationRequest",
    "CreateOpenIDConnectProvider",
    "CreateSAMLProvider",
    "CreateServiceLinkedRole",
    "CreateServiceSpecificCredential",
    "CreateVirtualMFADevice",
    "CreateWorkloadIdentityProvider",
    "CreateWorkloadIdentityProviderOutboundSigner",
    "CreateWorkloadIdentityTemplate",
    "DeactivateMFADevice",
    "DeleteAccountPasswordPolicy",
    "DeleteOpenIDConnectProvider",
    "DeleteSAMLProvider",
    "DeleteSSHPublicKey",
    "DeleteServerCertificate",
    "DeleteServiceLinkedRole",
    "DeleteServiceSpecificCredential",
    "DeleteSigningCertificate",
    "DeleteVirtualMFADevice",
    "DeleteWorkloadIdentityProvider",
    "DeleteWorkloadIdentityProviderOutboundSigner",
    "DeleteWorkloadIdentityProviderResourcePolicy",
    "DeleteWorkloadIdentityTemplate",
    "DeleteWorkloadIdentityTemplateAttestationPolicy",
    "DisableOrganizationLevelResources",
    "DisableOrganizationsRootCredentialsManagement",
    "DisableOrganizationsRootSessions",
    "DisableOutboundWebIdentityFederation",
    "DisableWorkloadIdentityProviderOutboundSigner",
    "EnableMFADevice",
    "EnableOrganizationLevelResources",
    "EnableOrganizationsRootCredentialsManagement",
    "EnableOrganizationsRootSessions",
    "EnableOutboundWebIdentityFederation",
    "EnableWorkloadIdentityProviderOutboundSigner",
    "GenerateCredentialReport",
    "GenerateOrganizationsAccessReport",
    "GenerateServiceLastAccessedDetails",
    "GetAccountAuthorizationDetails",
    "GetAccountPasswordPolicy",
    "GetAccountProperties",
    "GetContextKeysForCustomPolicy",
    "GetContextKeysForPrincipalPolicy",
    "GetCredentialReport",
    "GetDelegationRequest",
    "GetHumanReadableSummary",
    "GetMFADevice",
    "GetOpenIDConnectProvider",
    "GetOrganizationsAccessReport",
    "GetOutboundWebIdentityFederationInfo",
    "GetRoleTemplateVersion",
    "GetSAMLProvider",
    "GetSSHPublicKey",
    "GetServerCertificate",
    "GetServiceLastAccessedDetails",
    "GetServiceLastAccessedDetailsWithEntities",
    "GetServiceLinkedRoleDeletionStatus",
    "GetWorkloadIdentityProvider",
    "GetWorkloadIdentityProviderDeletionStatus",
    "GetWorkloadIdentityProviderResourcePolicy",
    "GetWorkloadIdentityTemplate",
    "GetWorkloadIdentityTemplateAttestationPolicy",
    "ListDelegationRequests",
    "ListMFADeviceTags",
    "ListMFADevices",
    "ListOpenIDConnectProviderTags",
    "ListOpenIDConnectProviders",
    "ListOrganizationsFeatures",
    "ListPoliciesGrantingServiceAccess",
    "ListSAMLProviderTags",
    "ListSAMLProviders",
    "ListSSHPublicKeys",
    "ListServerCertificateTags",
    "ListServerCertificates",
    "ListServiceSpecificCredentials",
    "ListSigningCertificates",
    "ListVirtualMFADevices",
    "ListWorkloadIdentityProviderOutboundSigners",
    "ListWorkloadIdentityProviderTags",
    "ListWorkloadIdentityProviders",
    "ListWorkloadIdentityTemplateTags",
    "ListWorkloadIdentityTemplates",
    "PutAccountProperties",
    "PutWorkloadIdentityProviderResourcePolicy",
    "PutWorkloadIdentityTemplateAttestationPolicy",
    "RejectDelegationRequest",
    "RemoveClientIDFromOpenIDConnectProvider",
    "ResetServiceSpecificCredential",
    "ResyncMFADevice",
    "SendDelegationToken",
    "SetSecurityTokenServicePreferences",
    "SimulateCustomPolicy",
    "SimulatePrincipalPolicy",
    "TagMFADevice",
    "TagOpenIDConnectProvider",
    "TagSAMLProvider",
    "TagServerCertificate",
    "TagWorkloadIdentityProvider",
    "TagWorkloadIdentityTemplate",
    "UntagMFADevice",
    "UntagOpenIDConnectProvider",
    "UntagSAMLProvider",
    "UntagServerCertificate",
    "UntagWorkloadIdentityProvider",
    "UntagWorkloadIdentityTemplate",
    "UpdateAccountPasswordPolicy",
    "UpdateDelegationRequest",
    "UpdateOpenIDConnectProvider",
    "UpdateOpenIDConnectProviderThumbprint",
    "UpdateSAMLProvider",
    "UpdateSSHPublicKey",
    "UpdateServerCertificate",
    "UpdateServiceSpecificCredential",
    "UpdateSigningCertificate",
    "UpdateWorkloadIdentityProviderOutboundSigner",
    "UploadSSHPublicKey",
    "UploadServerCertificate",
    "UploadSigningCertificate",
];

/// The IAM service; all state is in one [`StateCell`].
pub struct IamService {
    state: StateCell<IamState>,
}

impl IamService {
    /// Built by the runtime from the registration in `lib.rs`.
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            state: StateCell::new(ctx),
        }
    }

    /// Reads the live state (tests, diagnostics).
    pub fn read<T>(&self, f: impl FnOnce(&IamState) -> T) -> T {
        self.state.read(f)
    }

    async fn dispatch(&self, mut req: AwsRequest) -> Result<http::Response<Body>, AwsError> {
        let q = QueryRequest::read(&mut req, MAX_REQUEST_BYTES).await?;
        let action = q.action.as_str();
        if UNSUPPORTED.contains(&action) {
            return Err(query::unsupported("IAM", action));
        }
        if !api::OPERATIONS.contains(&action) {
            return Err(query::invalid_action(action));
        }
        let scope = Scope::new(req.scope.account.clone(), HOME_REGION);
        let ctx = Ctx {
            account: scope.account.clone(),
            key: req.access_key_id.clone(),
            now: query::now(),
        };
        let result = if api::is_read(action) {
            self.state.read(|s| {
                let mut copy = s.scopes.get(&scope).cloned().unwrap_or_default();
                api::run(&mut copy, &ctx, &q)
            })?
        } else {
            self.state
                .write(&scope, |s| api::run(s.scopes.get_mut(&scope), &ctx, &q))
                .await?
        };
        Ok(query::response(action, api::XMLNS, result.as_ref()))
    }
}

/// The whole [`cryopod::StateProvider`]: nothing is derived at run time.
impl CellProvider for IamService {
    type State = IamState;
    fn cell(&self) -> &StateCell<IamState> {
        &self.state
    }
}

#[async_trait]
impl Service for IamService {
    async fn handle(&self, req: AwsRequest) -> http::Response<Body> {
        match self.dispatch(req).await {
            Ok(resp) => resp,
            Err(e) => query::error_response(&e),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
