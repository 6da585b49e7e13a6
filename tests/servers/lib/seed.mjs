// Seed data: the fixed start-up data set and the bulk generator behind
// POST /_harness/seed.

const SEED_PATIENTS = [
  { family: 'Ingram', given: 'Ada', gender: 'female', birthDate: '1961-03-14' },
  { family: 'Okafor', given: 'Chidi', gender: 'male', birthDate: '1975-11-02' },
  { family: 'Lindqvist', given: 'Maja', gender: 'female', birthDate: '1988-07-21' },
  { family: 'Tanaka', given: 'Hiro', gender: 'male', birthDate: '1992-01-30' },
  { family: 'Moreau', given: 'Elise', gender: 'other', birthDate: '2004-09-09' },
];

/** How many of the seeded Patients belong to the seeded Group (the first ones). */
export const GROUP_SIZE = 3;

/** Upper bounds of POST /_harness/seed. */
export const MAX_SEED_PATIENTS = 100_000;
export const MAX_SEED_OBSERVATIONS_PER_PATIENT = 100;

function bodyWeight(patientId, kg, effective) {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{
      coding: [{
        system: 'http://terminology.hl7.org/CodeSystem/observation-category',
        code: 'vital-signs',
      }],
    }],
    code: { coding: [{ system: 'http://loinc.org', code: '29463-7', display: 'Body weight' }] },
    subject: { reference: `Patient/${patientId}` },
    effectiveDateTime: effective,
    valueQuantity: {
      value: kg, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg',
    },
  };
}

/**
 * Seeds 5 Patients, 2 body-weight Observations for each, one Group of the
 * first GROUP_SIZE Patients, and one Practitioner (the default App Launch
 * user). Returns { patientIds, groupId, groupPatientIds, practitionerId }.
 */
export async function seedFhirStore(repo) {
  const patientIds = [];
  for (const [i, p] of SEED_PATIENTS.entries()) {
    const patient = await repo.createResource({
      resourceType: 'Patient',
      identifier: [{ system: 'urn:smart-fhir:test:mrn', value: `MRN-${1001 + i}` }],
      active: true,
      name: [{ use: 'official', family: p.family, given: [p.given] }],
      gender: p.gender,
      birthDate: p.birthDate,
    });
    patientIds.push(patient.id);
    for (const [j, kg] of [70 + i, 71 + i].entries()) {
      await repo.createResource(bodyWeight(patient.id, kg, `2024-0${j + 1}-15T09:30:00Z`));
    }
  }
  const groupPatientIds = patientIds.slice(0, GROUP_SIZE);
  const group = await repo.createResource({
    resourceType: 'Group',
    identifier: [{ system: 'urn:smart-fhir:test:group', value: 'COHORT-1' }],
    type: 'person',
    actual: true,
    name: 'smart-fhir test cohort',
    quantity: groupPatientIds.length,
    member: groupPatientIds.map((id) => ({ entity: { reference: `Patient/${id}` } })),
  });
  const practitioner = await repo.createResource({
    resourceType: 'Practitioner',
    identifier: [{ system: 'urn:smart-fhir:test:staff', value: 'STAFF-1' }],
    active: true,
    name: [{ use: 'official', family: 'Hopper', given: ['Grace'], prefix: ['Dr.'] }],
  });
  return {
    patientIds, groupId: group.id, groupPatientIds, practitionerId: practitioner.id,
  };
}

let bulkSeedCounter = 0;

/**
 * Adds `patients` Patients with `observationsPerPatient` body-weight
 * Observations each, directly in the repository. Returns the new Patient ids.
 */
export async function seedBulk(repo, { patients, observationsPerPatient }) {
  const ids = [];
  for (let i = 0; i < patients; i += 1) {
    bulkSeedCounter += 1;
    const n = bulkSeedCounter;
    const patient = await repo.createResource({
      resourceType: 'Patient',
      identifier: [{ system: 'urn:smart-fhir:test:seed', value: `SEED-${n}` }],
      active: true,
      name: [{ use: 'official', family: `Seed${n}`, given: ['Bulk'] }],
      gender: ['female', 'male', 'other', 'unknown'][n % 4],
      birthDate: `${1940 + (n % 80)}-0${1 + (n % 9)}-1${n % 10}`,
    });
    ids.push(patient.id);
    for (let j = 0; j < observationsPerPatient; j += 1) {
      const day = String(1 + (j % 28)).padStart(2, '0');
      await repo.createResource(bodyWeight(patient.id, 50 + ((n + j) % 60), `2024-03-${day}T08:00:00Z`));
    }
  }
  return ids;
}
